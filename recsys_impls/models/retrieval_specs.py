"""Registry entries of the retrieval models (two-tower, neumf). Imported only by the registry's loader
(``spec.MODEL_MODULES``), so the registration order, and with it ``list`` and every message naming the
models, does not depend on which module a caller imported first."""

from __future__ import annotations

from recsys_impls.models import neumf as nm
from recsys_impls.models import two_tower as tt
from recsys_impls.models.spec import ModelSpec, register_model

RETRIEVAL_METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "recall@100", "ndcg@100")

TWO_TOWER = register_model(ModelSpec(
    name="two-tower", task="retrieval",
    description="user and item towers (own features pooled, MLP, L2-normalised), in-batch sampled softmax "
                "with logQ correction (temperature); brute-force top-K over the item corpus",
    reference="Yi et al. 2019 (sampling-bias-corrected two-tower retrieval, RecSys)",
    config_fields=(*tt.RETRIEVAL_FIELDS, "temperature"),
    validate=lambda config: tt.from_model_config(config).validate(),
    param_shapes=lambda config: tt.param_shapes(tt.from_model_config(config), *tt.id_towers(config)),
    initial_params=lambda config, seed: tt.initial_params(tt.from_model_config(config), *tt.id_towers(config), seed),
    forward=tt.id_tower_forward,
    builders={"torch": "recsys_impls.torch_impl.two_tower:TorchTwoTower",
              "tf": "recsys_impls.tf_impl.two_tower:TFTwoTower"},
    quality_metrics=RETRIEVAL_METRICS, higher_is_better=RETRIEVAL_METRICS,
    axes=tt.RETRIEVAL_AXES,
    # the settings the README's figures were measured with (Adagrad)
    train_defaults={"learning_rate": 0.1, "steps": 1000, "batch_size": 512},
))

NEUMF = register_model(ModelSpec(
    name="neumf", task="retrieval",
    description="GMF + MLP towers over user and item embeddings, BCE with sampled negatives; "
                "leave-one-out evaluation against 100 sampled items",
    reference="He et al. 2017 (Neural Collaborative Filtering, WWW)",
    config_fields=(*tt.RETRIEVAL_FIELDS, "negatives"),
    validate=lambda config: nm.from_model_config(config).validate(),
    param_shapes=lambda config: nm.param_shapes(nm.from_model_config(config), *nm.sizes(config)),
    initial_params=lambda config, seed: nm.initial_params(nm.from_model_config(config), *nm.sizes(config), seed),
    forward=nm.spec_forward,
    builders={"torch": "recsys_impls.torch_impl.neumf:TorchNeuMF", "tf": "recsys_impls.tf_impl.neumf:TFNeuMF"},
    quality_metrics=("hr@10", "ndcg@10"), higher_is_better=("hr@10", "ndcg@10"),
    axes=tt.RETRIEVAL_AXES,
    train_defaults={"learning_rate": 0.1, "steps": 2000, "batch_size": 2048},
))
