# The report across datasets and folds.

localrules:
    report,


rule report:
    input:
        unpack(inputs("report")),
    output:
        **outputs("report"),
    params:
        **pipeline.snakemake_params("report", PARAMS),
    log:
        pipeline.snakemake_log("report"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("report").threads
    resources:
        **pipeline.snakemake_resources("report"),
    shell:
        pipeline.snakemake_shell("report")
