# Helpers shared by the rules: everything is looked up in avfmae/pipeline.py.


def outputs(name):
    return {
        k: directory(v) if pipeline.is_directory(v) else v
        for k, v in pipeline.stage_outputs(name, PARAMS).items()
    }


def inputs(name):
    return lambda wildcards: pipeline.stage_inputs(name, PARAMS, dict(wildcards))
