"""Components that register cleanly and fail when used, each in its own way."""

from xaicore.plugin import hookimpl


@hookimpl
def register_models(register):
    register("faulty-forward", "xai_faulty.parts:FaultyForward", description="forward raises")
    register("tuple-output", "xai_faulty.parts:TupleOutput", description="returns a tuple")
    register("faulty-init", "xai_faulty.parts:FaultyInit", description="constructor raises")


@hookimpl
def register_explainers(register):
    register("faulty-explainer", "xai_faulty.parts:FaultyExplainer", description="raises")
    register("faulty-init-explainer", "xai_faulty.parts:FaultyInitExplainer",
             description="constructor raises")


@hookimpl
def register_engines(register):
    register("faulty-engine", "xai_faulty.parts:FaultyEngine", description="raises")


@hookimpl
def register_datasets(register):
    register("FaultyData", "xai_faulty.parts:load", description="raises")


@hookimpl
def register_commands(cli):
    @cli.command("faulty")
    def faulty_cmd():
        """A command that raises."""
        raise RuntimeError("the faulty command broke")
