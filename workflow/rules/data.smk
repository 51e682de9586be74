# download → index → preprocess, per dataset ({ds}).

localrules:
    download,


rule download:
    input:
        unpack(inputs("download")),
    output:
        **outputs("download"),
    params:
        **pipeline.snakemake_params("download", PARAMS),
    log:
        pipeline.snakemake_log("download"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("download").threads
    resources:
        **pipeline.snakemake_resources("download"),
    shell:
        pipeline.snakemake_shell("download")


rule index:
    input:
        unpack(inputs("index")),
    output:
        **outputs("index"),
    params:
        **pipeline.snakemake_params("index", PARAMS),
    log:
        pipeline.snakemake_log("index"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("index").threads
    resources:
        **pipeline.snakemake_resources("index"),
    shell:
        pipeline.snakemake_shell("index")


rule preprocess:
    input:
        unpack(inputs("preprocess")),
    output:
        **outputs("preprocess"),
    params:
        **pipeline.snakemake_params("preprocess", PARAMS),
    log:
        pipeline.snakemake_log("preprocess"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("preprocess").threads
    resources:
        **pipeline.snakemake_resources("preprocess"),
    shell:
        pipeline.snakemake_shell("preprocess")
