"""Registers the built-in model architectures (imported only when a model is built)."""

from xaicore.plugin import hookimpl


@hookimpl
def register_models(register):
    register("cnn-lstm-attention", "xai_models.hybrid:CNNLSTMAttention",
             description="CNN-BiLSTM-Attention hybrid: Conv1d blocks, BiLSTM, self-attention")
    register("inception-time", "xai_models.inception:InceptionTime",
             description="InceptionTime (Ismail Fawaz et al. 2020)")
    register("fcn", "xai_models.fcn:FCN", description="Fully convolutional network (Wang et al. 2017)")
    register("resnet", "xai_models.resnet:ResNet", description="ResNet for time series (Wang et al. 2017)")
    register("transformer", "xai_models.transformer:TransformerClassifier",
             description="Transformer encoder classifier that exposes its attention weights")
