# Helpers of the rules: everything is looked up in avfmae/pipeline.py.


def stage_outputs(name):
    # outputs without a file suffix are folders
    return {
        role: directory(path) if pipeline.is_directory(path) else path
        for role, path in pipeline.stage_outputs(name, PARAMS).items()
    }


def stage_inputs(name):
    # a function of the wildcards: fan-in (pools, previous stage, every fold) depends on params
    return lambda wildcards: pipeline.stage_inputs(name, PARAMS, dict(wildcards))
