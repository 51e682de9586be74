# One rule per stage of the table in avfmae/pipeline.py (STAGES: command, wildcards, inputs,
# outputs, params, resources), the single source of truth shared with dvc.yaml; every rule only
# calls the CLI. The README's pipeline table lists each stage's paths; `snakemake -n -p` prints
# them per job.


for stage in pipeline.enabled_stages(PARAMS):

    rule:
        name:
            stage.name
        input:
            unpack(stage_inputs(stage.name)),
        output:
            **stage_outputs(stage.name),
        params:
            command=stage_command(stage.name),
            **pipeline.snakemake_params(stage.name, PARAMS),
        log:
            pipeline.snakemake_log(stage.name),
        conda:
            "../envs/avfmae.yaml"
        localrule: stage.local
        threads: stage.threads
        resources:
            **pipeline.snakemake_resources(stage.name),
        shell:
            "{params.command} > {log} 2>&1"
