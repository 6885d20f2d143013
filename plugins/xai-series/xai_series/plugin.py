"""Registers time series as a kind of input, the default one."""

from xaicore.plugin import hookimpl


@hookimpl
def register_modalities(register):
    register("series", "xai_series.modality:SeriesModality", default=True,
             description="Time series [sample, time, feature]: UCR/UEA sets, CSV, npz, numpy")
