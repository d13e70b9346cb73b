"""llm-serving-stacks: environment files to cdktf stacks, service specs and the serving app."""

DISTRIBUTION = "llm-serving-stacks"


def __getattr__(name: str) -> str:
    # The one version is pyproject's [project].version, read back from the installed metadata
    # (a checkout's editable install or a wheel); on first use, as importlib.metadata costs ~40 ms.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version(DISTRIBUTION)
    except PackageNotFoundError:  # sources put on sys.path by hand, never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
