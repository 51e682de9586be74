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


def stage_command(name):
    # a function of the job, made per stage: Snakemake evaluates a rule's shell expression when
    # the job runs, when a loop variable would name the last stage of the loop
    return lambda wildcards, resources: pipeline.snakemake_command(
        name, dict(wildcards), resources.gpu
    )
