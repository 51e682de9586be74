# pretrain → finetune s1 → s2 → s3 → evaluate, per dataset and fold.


rule pretrain:
    input:
        unpack(inputs("pretrain")),
    output:
        **outputs("pretrain"),
    params:
        **pipeline.snakemake_params("pretrain", PARAMS),
    log:
        pipeline.snakemake_log("pretrain"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("pretrain").threads
    resources:
        **pipeline.snakemake_resources("pretrain"),
    shell:
        pipeline.snakemake_shell("pretrain")


rule finetune_s1:
    input:
        unpack(inputs("finetune_s1")),
    output:
        **outputs("finetune_s1"),
    params:
        **pipeline.snakemake_params("finetune_s1", PARAMS),
    log:
        pipeline.snakemake_log("finetune_s1"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("finetune_s1").threads
    resources:
        **pipeline.snakemake_resources("finetune_s1"),
    shell:
        pipeline.snakemake_shell("finetune_s1")


rule finetune_s2:
    input:
        unpack(inputs("finetune_s2")),
    output:
        **outputs("finetune_s2"),
    params:
        **pipeline.snakemake_params("finetune_s2", PARAMS),
    log:
        pipeline.snakemake_log("finetune_s2"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("finetune_s2").threads
    resources:
        **pipeline.snakemake_resources("finetune_s2"),
    shell:
        pipeline.snakemake_shell("finetune_s2")


rule finetune_s3:
    input:
        unpack(inputs("finetune_s3")),
    output:
        **outputs("finetune_s3"),
    params:
        **pipeline.snakemake_params("finetune_s3", PARAMS),
    log:
        pipeline.snakemake_log("finetune_s3"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("finetune_s3").threads
    resources:
        **pipeline.snakemake_resources("finetune_s3"),
    shell:
        pipeline.snakemake_shell("finetune_s3")


rule evaluate:
    input:
        unpack(inputs("evaluate")),
    output:
        **outputs("evaluate"),
    params:
        **pipeline.snakemake_params("evaluate", PARAMS),
    log:
        pipeline.snakemake_log("evaluate"),
    conda:
        "../envs/avfmae.yaml"
    threads: pipeline.stage("evaluate").threads
    resources:
        **pipeline.snakemake_resources("evaluate"),
    shell:
        pipeline.snakemake_shell("evaluate")
