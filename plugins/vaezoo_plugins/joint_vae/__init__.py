"""JointVAE: continuous and Gumbel-softmax categorical latents with a capacity per type (Dupont 2018)."""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import BASE_ENCODER, CONV_PARTS, beta_elbo_params


@hookimpl
def register_structures(register):
    register("joint-latent", "vaezoo_plugins.joint_vae.structure:JointLatent",
             "a Gaussian group and a Gumbel-softmax categorical group, decoded together")


@hookimpl
def register_encoders(register):
    register("joint-conv", "vaezoo_plugins.joint_vae.structure:JointEncoder",
             "a registered encoder's trunk with Gaussian and categorical heads",
             params=(BASE_ENCODER,))


@hookimpl
def register_objectives(register):
    register("joint-capacity-elbo", "vaezoo_plugins.joint_vae.objective:JointCapacityELBO",
             "reconstruction + gamma |KL - C(step)| for the continuous and the discrete latents apart")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="joint-vae",
        description="JointVAE: continuous and categorical latents, each with its own growing capacity",
        parts={"encoder": "joint-conv", "decoder": CONV_PARTS["decoder"], "likelihood": CONV_PARTS["likelihood"]},
        structure="joint-latent",
        objective="joint-capacity-elbo",
        params=(
            *training_params(lr=5e-4, batch_size=64, epochs=10, latent_dim=10),
            Param("categories", "int", 10, "categories of the discrete latent", low=2),
            Param("temperature", "float", 0.67, "Gumbel-softmax temperature", low=0.0, low_exclusive=True),
            Param("continuous_capacity", "float", 5.0, "final capacity C of the continuous latents, nats", low=0.0),
            Param("discrete_capacity", "float", 10.0, "final capacity of the discrete latent, nats (never above "
                  "log categories)", low=0.0),
            Param("capacity_steps", "int", 50_000, "steps over which both capacities grow linearly from 0", low=1),
            Param("gamma", "float", 100.0, "weight of each |KL - C|", low=0.0),
            *beta_elbo_params(beta=None),
        ),
        paper="Dupont 2018, Learning Disentangled Joint Continuous and Discrete Representations, NeurIPS "
              "(arXiv 1804.00104); defaults of its FashionMNIST run",
    ))
