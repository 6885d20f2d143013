"""Registers images as a kind of input, the digits dataset and the image networks."""

from xaicore.plugin import hookimpl


@hookimpl
def register_modalities(register):
    register("images", "xai_image.modality:ImageModality",
             description="Images [sample, channel, height, width], travelling as [sample, pixel, channel]")


@hookimpl
def register_datasets(register):
    register("digits", "xai_image.datasets:load_digits",
             description="scikit-learn's handwritten digits: 1,797 8x8 images, 10 classes, upsampled x4")
    register("images", "xai_image.datasets:load_image_files",
             description="Your own images: --dataset ROOT (a folder per class) or an .npz of images")


@hookimpl
def register_models(register):
    register("image-cnn", "xai_image.networks:ImageCNN",
             description="Images: three Conv2d blocks and global average pooling (Grad-CAM on the last)")
    register("image-resnet18", "xai_image.networks:ResNet18",
             description="Images: ResNet-18 (four stages of basic blocks; torchvision's parameter names)")
    register("image-vit", "xai_image.vit:VisionTransformer",
             description="Images: a small Vision Transformer (CLS token; attention per layer and head)")
