import pytest

from vaezoo.errors import UnknownNameError, UsageError
from vaezoo.hparams import Param, Schema, training_params

SCHEMA = Schema((*training_params(lr=1e-4, batch_size=64, epochs=10, latent_dim=10),
                 Param("beta", "float", 1.0, low=0.0), Param("dual", "bool", False),
                 Param("estimator", "str", "mss", choices=("mss", "mws"))))


def test_defaults_and_typed_overrides():
    hp = SCHEMA.resolve({"beta": 4}, texts=["epochs=3", "dual=yes", "estimator=mws", "lr=3e-4"])
    assert hp.beta == 4.0 and isinstance(hp.beta, float)
    assert hp["epochs"] == 3 and hp.dual is True and hp.estimator == "mws" and hp.lr == 3e-4
    assert hp.batch_size == 64


@pytest.mark.parametrize("text, message", [
    ("beta=-1", "outside the valid range"),
    ("epochs=0", "outside the valid range"),
    ("batch_size=-5", "outside the valid range"),
    ("lr=fast", "not a valid float"),
    ("lr=0", "outside the valid range"),
    ("lr=nan", "finite"),
    ("epochs=2.5", "not a valid int"),
    ("dual=maybe", "not a valid bool"),
    ("estimator=xyz", "must be one of"),
    ("beta", "key=value"),
])
def test_bad_values_name_the_option(text, message):
    with pytest.raises(UsageError, match=message):
        SCHEMA.resolve(texts=[text])


def test_unknown_option_suggests_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean: beta"):
        SCHEMA.resolve(texts=["btea=2"])


def test_bool_is_not_an_int():
    with pytest.raises(UsageError):
        SCHEMA.resolve({"epochs": True})


def test_bad_default_is_rejected_when_declared():
    with pytest.raises(UsageError):
        Param("beta", "float", -1.0, low=0.0)
