"""The estimators that assume Bernoulli or one-hot layers (ARM, DisARM, ARSM, REBAR, RELAX, the unordered set) on a
user's two-layer model: refused when built where the model says enough (`InfNet.layer_kinds`, `InfNet.layer_order`),
at the first call otherwise (the drawn latents), each with a message that names the loss, the layer, what was found
and only the estimators that fit (`blackbox_vae.losses._layers.fitting_estimators`)."""

import re

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical
from torch.nn.functional import binary_cross_entropy_with_logits

from blackbox_vae import (ARMLoss, ARSMLoss, DisARMLoss, DistributionInfNet, GenModel, InfNet, REBARLoss,
                          RELAXControlVariate, RELAXLoss, UnorderedSetLoss)
from blackbox_vae.losses._layers import ESTIMATORS, fitting_estimators
from blackbox_vae.losses.registry import LOSSES, build_loss
from blackbox_vae.models import (CategoricalGenModel, CategoricalInfNet, DeepSBNGenModel, DeepSBNInfNet,
                                 GaussianMLPInfNet, HVAEGenModel, HVAELadderInfNet, HVAEReverseInfNet, SBNGenModel,
                                 SBNInfNet)

DATA_DIM, CLASSES, BITS = 20, 10, 16
DATA = torch.bernoulli(torch.full((6, DATA_DIM), 0.3))
#: what fits a model with a one-hot layer among several, and no reparameterized or relaxed sample
SCORE_ONLY = ["VIMCOLoss", "ScoreFunctionLoss", "NVILLoss", "RWSLoss", "SymmetricLoss"]


def bernoulli_log_prob(logits, value):
    logits, value = torch.broadcast_tensors(logits, value)
    return -binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


# ------------------------------------------------------------- the user's model, written from the docs
class _ClassThenBits(InfNet):
    """q(z1|x) q(z2|x, z1): z1 one-hot of 10 classes, then 16 Bernoulli bits given x and z1; tuple latents."""

    def __init__(self):
        super().__init__()
        self.class_net = nn.Linear(DATA_DIM, CLASSES)
        self.bit_net = nn.Linear(DATA_DIM + CLASSES, BITS)

    def forward(self, data):
        self.params_ = (data, self.class_net(data))  # x [batch, D], class logits [batch, C]
        return self

    def _bit_logits(self, z1):  # [batch, K, C] -> [batch, K, B]
        data = self.params_[0].unsqueeze(1).expand(-1, z1.shape[1], -1)
        return self.bit_net(torch.cat([data, z1], -1))

    def _class_logits(self, n_samples):  # [batch, K, C], normalized
        return torch.log_softmax(self.params_[1], -1).unsqueeze(1).expand(-1, n_samples, -1)

    def sample(self, n_samples=1):
        with torch.no_grad():
            z1 = OneHotCategorical(logits=self.params_[1]).sample((n_samples,)).movedim(0, 1)  # [batch, K, C]
            z2 = torch.bernoulli(torch.sigmoid(self._bit_logits(z1)))  # [batch, K, B]
        return z1, z2

    def log_prob(self, latents):
        z1, z2 = latents
        return (z1 * self._class_logits(z1.shape[1])).sum(-1) + bernoulli_log_prob(self._bit_logits(z1), z2)

    def bernoulli_logits(self, latents, layer=0):
        if layer != 1:
            raise NotImplementedError("layer 0 is one-hot")
        return self._bit_logits(latents[0])


class Encoder(_ClassThenBits):
    """The model as the docs describe it: both logits hooks, and what each layer is."""

    layer_kinds = ("categorical", "bernoulli")

    def categorical_logits(self, latents, layer=0):
        if layer != 0:
            raise NotImplementedError("layer 1 is Bernoulli")
        return self._class_logits(latents[0].shape[1])


class MinimalEncoder(_ClassThenBits):
    """Without `categorical_logits` (only what ARM would need), declaring its layers."""

    layer_kinds = ("categorical", "bernoulli")


class UndeclaredEncoder(Encoder):
    """The same model, not saying what its layers are."""

    layer_kinds = None


class WrongLogitsEncoder(UndeclaredEncoder):
    """The user's bug: `bernoulli_logits` written for the categorical layer too (its class logits, as if bits)."""

    def bernoulli_logits(self, latents, layer=0):
        if layer == 0:
            return self.params_[1].unsqueeze(1).expand(-1, latents[0].shape[1], -1)
        return super().bernoulli_logits(latents, layer)


class OrderedEncoder(UndeclaredEncoder):
    """Saying only the order q draws its layers in."""

    layer_order = (0, 1)


class Decoder(GenModel):
    """p(z1) p(z2|z1) p(x|z2); keeps every z1 it scored (`seen`)."""

    def __init__(self):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(CLASSES))
        self.bits_given_class = nn.Linear(CLASSES, BITS)
        self.data_given_bits = nn.Linear(BITS, DATA_DIM)
        self.seen = []

    def forward(self, data, latents):
        z1, z2 = latents
        self.seen.append(z1.detach())
        self.params_ = (self.bits_given_class(z1), self.data_given_bits(z2))
        return self

    def log_prob(self, data, latents):
        z1, z2 = latents
        bit_logits, data_logits = self.params_
        return ((z1 * torch.log_softmax(self.prior_logits, -1)).sum(-1) + bernoulli_log_prob(bit_logits, z2)
                + bernoulli_log_prob(data_logits, data.unsqueeze(1)))

    def sample(self, n_samples=1):
        z1 = OneHotCategorical(logits=self.prior_logits).sample((n_samples,))
        z2 = torch.bernoulli(torch.sigmoid(self.bits_given_class(z1)))
        return torch.bernoulli(torch.sigmoid(self.data_given_bits(z2))), (z1, z2)


def relax(inf_net, gen_model, k=2):
    return RELAXLoss(inf_net, gen_model, k, RELAXControlVariate(DATA_DIM, CLASSES + BITS, hidden=(4,)))


ANTITHETIC = [ARMLoss, DisARMLoss]
ONE_LAYER = [ARSMLoss, REBARLoss, relax, UnorderedSetLoss]
ONE_LAYER_IDS = ["arsm", "rebar", "relax", "unordered-set"]
LOSS_NAME = {ARSMLoss: "ARSMLoss", REBARLoss: "REBARLoss", relax: "RELAXLoss", UnorderedSetLoss: "UnorderedSetLoss"}


def suggested(message):
    """The estimators a refusal advises, in order."""
    found = re.search(r"Estimators that fit `\w+`: ([\w, ]+)\.", message)
    assert found, f"no advice in: {message}"
    return found.group(1).split(", ")


# ------------------------------------------------------------------------ refused when the loss is built
@pytest.mark.parametrize("loss_class", ANTITHETIC)
def test_antithetic_refuse_a_declared_one_hot_layer_when_built(loss_class):
    with pytest.raises(ValueError, match=rf"^{loss_class.__name__} draws every layer of latents as Bernoulli bits, "
                                         r"but `Encoder.layer_kinds` declares layer 0 'categorical' \(layer 0 "
                                         r"categorical, layer 1 bernoulli\)") as refusal:
        loss_class(Encoder(), Decoder(), 4)
    assert suggested(str(refusal.value)) == SCORE_ONLY


@pytest.mark.parametrize("build", ONE_LAYER, ids=ONE_LAYER_IDS)
def test_one_layer_estimators_refuse_declared_layers_when_built(build):
    with pytest.raises(ValueError, match=rf"^{LOSS_NAME[build]} handles one layer of latents \(a tensor, or a "
                                         r"1-tuple\); `Encoder.layer_kinds` declares a tuple of 2 entries \(layer 0 "
                                         r"categorical, layer 1 bernoulli\)") as refusal:
        build(Encoder(), Decoder())
    assert suggested(str(refusal.value)) == SCORE_ONLY


@pytest.mark.parametrize("build", ONE_LAYER, ids=ONE_LAYER_IDS)
def test_one_layer_estimators_refuse_a_declared_layer_order_when_built(build):
    with pytest.raises(ValueError, match=rf"^{LOSS_NAME[build]} handles one layer of latents .*"
                                         r"`OrderedEncoder.layer_order` declares a tuple of 2 entries"):
        build(OrderedEncoder(), Decoder())


@pytest.mark.parametrize("build, kind", [(ARSMLoss, "categorical"), (REBARLoss, "bernoulli")])
def test_one_layer_of_the_wrong_declared_kind_is_refused_when_built(build, kind):
    class Declared(SBNInfNet):
        layer_kinds = ("bernoulli",) if kind == "categorical" else ("categorical",)

        @property
        def has_categorical_logits(self):  # as if it had both hooks: the declaration decides
            return True

    with pytest.raises(ValueError, match=rf"{build.__name__} handles one layer of {kind} latents; "
                                         r"`Declared.layer_kinds` declares layer 0"):
        build(Declared(6, 3), SBNGenModel(6, 3), 2)


def test_a_missing_hook_advises_only_what_fits_the_model():
    """ARSM on the model without class logits: the hook's refusal (a TypeError) names no estimator that assumes a
    kind of layer, since the model has one of each."""
    with pytest.raises(TypeError, match=r"ARSMLoss needs `MinimalEncoder.categorical_logits`") as refusal:
        ARSMLoss(MinimalEncoder(), Decoder(), 2)
    assert suggested(str(refusal.value)) == SCORE_ONLY


def test_a_malformed_declaration_is_named():
    class Misdeclared(SBNInfNet):
        layer_kinds = ("binary",)

    with pytest.raises(TypeError, match=r"`Misdeclared.layer_kinds` must be None or a non-empty tuple of 'bernoulli', "
                                        r"'categorical', 'other'.*got \('binary',\)"):
        ARMLoss(Misdeclared(6, 3), SBNGenModel(6, 3), 2)


# ---------------------------------------------------------------------- refused at the first call
@pytest.mark.parametrize("loss_class", ANTITHETIC)
@pytest.mark.parametrize("batch, k", [(1, 4), (6, 8)])
def test_antithetic_refuse_bernoulli_logits_written_for_a_one_hot_layer(loss_class, batch, k):
    """The user's bug: before, both trained, and p saw "one-hot" vectors with 0, 1 or 2 ones. Now the first call
    refuses before p scores anything."""
    torch.manual_seed(batch)
    gen_model = Decoder()
    loss = loss_class(WrongLogitsEncoder(), gen_model, k)  # nothing declared: built
    with pytest.raises(ValueError, match=rf"^{loss_class.__name__} draws every layer of latents as Bernoulli bits, "
                                         r"but layer 0 of `WrongLogitsEncoder.sample` is one-hot \(every draw has "
                                         r"exactly one 1 among its last dimension's 10 entries\), and "
                                         r"`WrongLogitsEncoder.log_prob` differs from the Bernoulli log-probability "
                                         r"of `bernoulli_logits` by up to [\d.]+ nats") as refusal:
        loss(DATA[:batch])
    assert suggested(str(refusal.value)) == SCORE_ONLY
    assert gen_model.seen == [] and loss.loss_history_ == []
    with pytest.raises(ValueError, match="is one-hot"):  # and again: a refusal does not mark the model checked
        loss(DATA[:batch])


@pytest.mark.parametrize("loss_class", ANTITHETIC)
def test_antithetic_refuse_a_layer_without_bernoulli_logits_at_the_first_call(loss_class):
    loss = loss_class(UndeclaredEncoder(), Decoder(), 4)
    with pytest.raises(ValueError, match=rf"^{loss_class.__name__} draws every layer of latents as Bernoulli bits, "
                                         r"but layer 0 of `UndeclaredEncoder.sample` has no Bernoulli logits "
                                         r"\(`bernoulli_logits` raised: layer 0 is one-hot\)") as refusal:
        loss(DATA)
    assert suggested(str(refusal.value)) == SCORE_ONLY
    assert isinstance(refusal.value.__cause__, NotImplementedError)


@pytest.mark.parametrize("build", ONE_LAYER, ids=ONE_LAYER_IDS)
def test_one_layer_estimators_refuse_undeclared_layers_at_the_first_call(build):
    gen_model = Decoder()
    loss = build(UndeclaredEncoder(), gen_model)
    with pytest.raises(ValueError, match=rf"^{LOSS_NAME[build]} handles one layer of latents \(a tensor, or a "
                                         r"1-tuple\); `UndeclaredEncoder.sample` returned tuple of 2 entries \(layer 0 "
                                         r"categorical, layer 1 bernoulli\)") as refusal:
        loss(DATA)
    assert suggested(str(refusal.value)) == SCORE_ONLY and gen_model.seen == []


class Probabilities(SBNInfNet):
    """A common slip: `sample` returns q's probabilities, not draws."""

    def sample(self, n_samples=1):
        return torch.sigmoid(self.bernoulli_logits(super().sample(n_samples), 0)).detach()


@pytest.mark.parametrize("build", [ARMLoss, DisARMLoss, REBARLoss, UnorderedSetLoss])
def test_values_other_than_0_and_1_are_refused_at_the_first_call(build):
    name = build.__name__
    loss = build(Probabilities(6, 3), SBNGenModel(6, 3), 2)
    found = r"holds values other than 0 and 1 \(e.g. 0\.\d+\)"
    message = (rf"^{name} draws every layer of latents as Bernoulli bits, but layer 0 of `Probabilities.sample` {found}"
               if build in ANTITHETIC else
               rf"^{name} reads `bernoulli_logits` for a bernoulli layer, but the layer of `Probabilities.sample` "
               rf"{found}")
    with pytest.raises(ValueError, match=message) as refusal:
        loss(DATA[:, :6])
    assert "ARMLoss" not in suggested(str(refusal.value))  # its layer is not Bernoulli


@pytest.mark.parametrize("loss_class", [ARSMLoss, UnorderedSetLoss])
def test_a_categorical_draw_that_is_not_one_hot_is_refused_at_the_first_call(loss_class):
    class TwoHot(CategoricalInfNet):
        def sample(self, n_samples=1):
            draw = super().sample(n_samples)
            return torch.maximum(draw, draw.roll(1, -1))  # two ones per latent

    loss = loss_class(TwoHot(6, 2, 3, hidden=(4,)), CategoricalGenModel(6, 2, 3, hidden=(4,)), 2)
    with pytest.raises(ValueError, match=rf"^{loss_class.__name__} reads `categorical_logits` for a categorical "
                                         r"layer, but the layer of `TwoHot.sample` is not one-hot"):
        loss(DATA[:, :6])


def test_dict_latents_are_refused_by_the_antithetic_estimators_with_advice():
    class DictBits(SBNInfNet):
        def sample(self, n_samples=1):
            return {"z": super().sample(n_samples)}

    with pytest.raises(ValueError, match=r"^ARMLoss handles latents as a tensor or a tuple of Bernoulli layers; "
                                         r"`DictBits.sample` returned dict\. Estimators that fit `DictBits`"):
        ARMLoss(DictBits(6, 3), SBNGenModel(6, 3), 2)(DATA[:, :6])


# --------------------------------------------------------------- what fits, and what still works
def test_the_advice_table_covers_every_registered_estimator():
    assert sorted(ESTIMATORS) == sorted(spec.loss_class.__name__ for spec in LOSSES.values())


def test_the_suggested_estimators_train_the_users_model():
    """Each estimator the refusals advise for the two-layer model trains it: a finite value, gradients for q and p."""
    torch.manual_seed(0)
    names = {spec.loss_class.__name__: name for name, spec in LOSSES.items()}
    for estimator in fitting_estimators(Encoder(), Decoder(), Encoder.layer_kinds):
        inf_net, gen_model = Encoder(), Decoder()
        loss = build_loss(names[estimator], inf_net, gen_model, 4, data_dim=DATA_DIM)
        loss(DATA).backward()
        assert all(torch.isfinite(z).all() and ((z == 0) | (z == 1)).all() for z in gen_model.seen)
        assert all(bool((z.sum(-1) == 1).all()) for z in gen_model.seen), estimator  # p saw one-hot z1 only
        for model in (inf_net, gen_model):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), estimator


@pytest.mark.parametrize("make, kinds, fits, misfits", [
    (lambda: SBNInfNet(6, 3), ("bernoulli",),
     {"ARMLoss", "DisARMLoss", "REBARLoss", "RELAXLoss", "UnorderedSetLoss", "GumbelSoftmaxLoss", "ZGRLoss"},
     {"ARSMLoss", "ELBOLoss", "IWAELoss"}),
    (lambda: CategoricalInfNet(6, 2, 3), ("categorical",), {"ARSMLoss", "UnorderedSetLoss", "GumbelSoftmaxLoss"},
     {"ARMLoss", "DisARMLoss", "REBARLoss", "ELBOLoss"}),
    (lambda: DeepSBNInfNet(6, [3, 2]), ("bernoulli", "bernoulli"), {"ARMLoss", "DisARMLoss", "ZGRLoss"},
     {"REBARLoss", "RELAXLoss", "ARSMLoss", "UnorderedSetLoss"}),
    (lambda: HVAEReverseInfNet(6, (2, 3), hidden=(4,)), ("bernoulli", "bernoulli"), {"ARMLoss", "DisARMLoss"},
     {"REBARLoss", "UnorderedSetLoss"}),
    (lambda: GaussianMLPInfNet(6, 2), None, {"ELBOLoss", "IWAELoss", "VIMCOLoss"},
     {"ARMLoss", "REBARLoss", "ARSMLoss", "UnorderedSetLoss"}),
], ids=["sbn", "categorical", "deep-sbn", "hvae", "gaussian"])
def test_the_library_models_declare_their_layers_and_what_fits_follows(make, kinds, fits, misfits):
    inf_net = make()
    assert inf_net.layer_kinds == kinds
    names = set(fitting_estimators(inf_net, None, inf_net.layer_kinds))
    assert fits <= names and not misfits & names, names
    assert set(SCORE_ONLY) <= names


def test_a_distribution_inf_net_declares_its_layer_after_forward():
    class Bits(DistributionInfNet):
        def __init__(self, make):
            super().__init__()
            self.linear, self.make = nn.Linear(6, 3), make

        def distribution(self, data):
            return self.make(self.linear(data))

    for make, kinds in [(lambda a: Bernoulli(logits=a), ("bernoulli",)),
                        (lambda a: Independent(Bernoulli(logits=a), 1), ("bernoulli",)),
                        (lambda a: OneHotCategorical(logits=a), ("categorical",)),
                        (lambda a: Independent(Normal(a, 1.0), 1), ("other",))]:
        inf_net = Bits(make)
        assert inf_net.layer_kinds is None  # not known before the first forward
        assert inf_net(DATA[:, :6]).layer_kinds == kinds


@pytest.mark.parametrize("loss_class", ANTITHETIC)
@pytest.mark.parametrize("model", ["sbn", "deep-sbn", "hvae-ladder", "hvae-reverse", "distribution"])
def test_the_supported_models_pass_the_first_call_check(loss_class, model):
    """Sound Bernoulli models are not refused, in float32 and with logits far from 0 (large log-probabilities)."""
    torch.manual_seed(0)
    if model == "sbn":
        inf_net, gen_model = SBNInfNet(DATA_DIM, 5), SBNGenModel(DATA_DIM, 5)
    elif model == "deep-sbn":
        inf_net, gen_model = DeepSBNInfNet(DATA_DIM, [5, 4]), DeepSBNGenModel(DATA_DIM, [5, 4])
    elif model == "distribution":
        class Bits(DistributionInfNet):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(DATA_DIM, 5)

            def distribution(self, data):
                return Independent(Bernoulli(logits=self.linear(data)), 1)

        inf_net, gen_model = Bits(), SBNGenModel(DATA_DIM, 5)
    else:
        gen_model = HVAEGenModel(DATA_DIM, (3, 4), hidden=(6,))
        inf_net = (HVAELadderInfNet(gen_model, DATA_DIM, hidden=(6,)) if model == "hvae-ladder"
                   else HVAEReverseInfNet(DATA_DIM, (3, 4), hidden=(6,)))
    with torch.no_grad():
        for parameter in inf_net.parameters():
            parameter.mul_(30)
    loss = loss_class(inf_net, gen_model, 4)
    for _ in range(2):
        loss(DATA).backward()
    assert len(loss.loss_history_) == 2
