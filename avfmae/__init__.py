__version__ = "0.1.0"

__all__ = ["predict"]


def __getattr__(name: str):
    # lazy: `import avfmae` stays light for preprocessing workers and the CLI
    if name == "predict":
        from avfmae.eval.predict import predict

        return predict
    raise AttributeError(f"module 'avfmae' has no attribute {name!r}")
