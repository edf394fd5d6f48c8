"""The API pages are complete: every exported function and class of the modules listed documents each parameter
(a docments comment beside it), and every config field carries its help."""
import dataclasses, importlib, inspect
import pytest
from fastcore.docments import docments
from brainseg.config import Config, config_help

COMPLETE = ['config', 'labels', 'io', 'phantom', 'template', 'data', 'transforms', 'randomize', 'samples', 'losses',
            'models', 'predict', 'adversarial', 'cascade', 'metrics', 'trainconfig', 'checkpoints', 'train', 'infer',
            'viewer', 'executors', 'experiments', 'results', 'cli']
NAMED = [('train', 'fit'), ('train', 'train'), ('models', 'UNet'), ('models', 'VNet'), ('data', 'split'),
         ('models', 'load_torch_file')]  # the ones found wanting in review


def undocumented(obj) -> list:
    "Parameters of a function or class without a docments comment (*args, **kwargs and config fields aside)."
    if inspect.isclass(obj) and (issubclass(obj, Config) or obj.__init__ is object.__init__): return []
    if inspect.isclass(obj) and issubclass(obj, Exception): return []
    params = inspect.signature(obj).parameters
    plain = {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != 'self'}
    if dataclasses.is_dataclass(obj): plain &= set(vars(obj).get('__annotations__', {}))  # inherited: documented there
    return sorted(n for n, doc in docments(obj).items() if n in plain and doc is None)


def exported(module: str):
    mod = importlib.import_module(f'brainseg.{module}')
    for name in mod.__all__:
        obj = getattr(mod, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__: yield name, obj


@pytest.mark.parametrize('module', COMPLETE)
def test_every_parameter_is_documented(module):
    gaps = {name: undocumented(obj) for name, obj in exported(module)}
    assert not {k: v for k, v in gaps.items() if v}, gaps


def test_every_module_is_checked():
    import pkgutil, brainseg
    modules = [m.name for m in pkgutil.iter_modules(brainseg.__path__) if not m.name.startswith('_')]
    assert sorted(COMPLETE) == sorted(modules)


def test_the_symbols_named_in_review_are_documented():
    for module, name in NAMED:
        assert not undocumented(getattr(importlib.import_module(f'brainseg.{module}'), name)), (module, name)


def test_the_check_can_fail():
    def f(a, # documented
          b): return a
    assert undocumented(f) == ['b']


def test_config_fields_carry_their_help():
    from brainseg.cascade import StageConfig
    from brainseg.train import TrainConfig
    for cls in (TrainConfig, StageConfig):
        rows = config_help(cls)
        assert [r['name'] for r in rows] == [f.name for f in dataclasses.fields(cls)]
        assert all(len(r['help']) > 10 for r in rows), [r['name'] for r in rows if len(r['help']) <= 10]
