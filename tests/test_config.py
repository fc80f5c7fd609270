"""conf/ is the single source: params.yaml in sync, every group option builds, bad or unknown keys name their key and
file, choices match the implementations, and params.yaml reaches the stages by the rules of benchmark.core.config."""

from __future__ import annotations

import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
import yaml

import benchmark.core.config as config_module
from benchmark.core.config import (
    INVOCATION_KEYS,
    SECTIONS,
    ConfigError,
    compose,
    load_config,
    model_config,
    resolve_recipe,
)
from benchmark.core.layout import CONF_DIR, experiment_home
from benchmark.core.sections import (
    DATASET_NAMES,
    Align,
    Augment,
    FetchLayout,
    OptimizerConfig,
    OptimizerName,
    Photo,
    Recipe,
    ReleaseFormat,
    SchedulerName,
    ScoringProtocol,
    SsimVariant,
)
from benchmark.tools.params import compose_params
from models import create_model, list_models

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_is_what_conf_composes(tmp_path: Path) -> None:
    fresh = tmp_path / "params.yaml"
    compose_params(fresh)
    committed = (REPO / "params.yaml").read_text()
    assert fresh.read_text() == committed, "params.yaml is stale: run `python -m benchmark.params` and commit it"


def test_run_config_fields_are_exactly_config_yamls_keys() -> None:
    """No hand-kept list of sections: the typed config and conf/config.yaml have the same top-level keys."""
    raw = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    keys = {k for k in raw if k not in ("defaults", "hydra")}
    groups = {
        next(iter(e)) for e in raw["defaults"] if isinstance(e, dict) and not next(iter(e)).startswith("override")
    }
    assert set(SECTIONS) | set(INVOCATION_KEYS) == keys | groups
    assert set(yaml.safe_load((REPO / "params.yaml").read_text())) == set(SECTIONS) | set(INVOCATION_KEYS)


def test_every_registered_model_has_a_conf_file_and_back() -> None:
    files = {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}
    assert files == set(list_models())
    for name in files:
        run = load_config([f"model={name}"])
        assert run.model.name == name  # the registry key is the conf key


@pytest.mark.parametrize("group", ["dataset", "train", "eval", "tracking", "model"])
def test_every_group_option_builds(group: str) -> None:
    for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
        run = load_config([f"{group}={option}"])
        assert getattr(run, group) is not None
        if group == "train":
            assert run.train.profile == option  # a profile is named after its file


def test_model_files_list_every_constructor_argument() -> None:
    """So that `-S model.overrides.<arg>=<value>` composes (Hydra refuses new keys without `+`) and names real args."""
    import inspect

    for name in list_models():
        cls = type(create_model(name))
        keyword = {p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind == p.KEYWORD_ONLY}
        overrides = load_config([f"model={name}"]).model.overrides
        assert set(overrides) == keyword, name
        assert all(v is None for v in overrides.values()), name  # null: the registered variant's own value
    run = load_config(["model=nafnet_tiny", "model.overrides.width=16"])
    assert run.model.constructor_kwargs() == {"width": 16}


def test_pipeline_models_are_registered() -> None:
    run = load_config()
    for name in run.pipeline.models:
        create_model(name)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.batch_size=0", "train.batch_size"),
        ("train.optimizer.name=sgd", "train.optimizer.name"),
        ("train.optimizer.lr=abc", "train.optimizer.lr"),
        ("train.resume=maybe", "train.resume"),
        ("+train.bogus=1", "train.bogus"),
        ("train.optimizer.betas=[0.9]", "train.optimizer.betas"),
        ("train.device=tpu", "train.device"),
        ("train.augment=rot45", "train.augment"),
        ("+dataset.val_cont=4", "dataset.val_cont"),
        ("dataset.val_count=-1", "dataset.val_count"),
        ("eval.tlc_window.base_ratio=0.5", "eval.tlc_window.base_ratio"),
        ("eval.score_workers=-1", "eval.score_workers"),
        ("pipeline.train_datasets=[gopro]", "pipeline.train_datasets"),
        ("figures.crop=0", "figures.crop"),
        ("tlc=maybe", "tlc"),
        ("seed=-3", "seed"),
        ("recipe=mine", "recipe"),
        ("+model.release.sha=x", "model.release"),
    ],
)
def test_bad_value_names_its_key_and_where_it_came_from(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}[.:].*\(from the command line\)$"):
        load_config([override])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dataset.protocol.ssim_variant=ms_ssim", "dataset.protocol.ssim_variant"),
        ("dataset.protocol.quantize=uint16", "dataset.protocol.quantize"),
        ("dataset.protocol.crop_border=-1", "dataset.protocol.crop_border"),
        ("dataset.protocol.align=sift", "dataset.protocol.align"),
        ("+dataset.protocol.extra_ssim_variants=[ms_ssim]", "dataset.protocol.extra_ssim_variants"),
        ("+dataset.protocol.extra_ssim_variants=[gaussian2d]", "dataset.protocol.extra_ssim_variants"),
        ("dataset=realblur_j dataset.protocol.ssim_variant=matlab3d", "dataset.protocol.align"),
    ],
)
def test_bad_protocol_value_names_its_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}"):
        load_config(override.split())


def test_unknown_key_in_a_conf_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    path = conf / "dataset" / "synthblur.yaml"
    path.write_text(path.read_text().replace("val_count: 10", "val_cont: 10"))
    monkeypatch.setattr(config_module, "CONF_DIR", conf)
    with pytest.raises(ConfigError) as err:
        load_config()
    assert str(err.value) == (
        "dataset.val_cont: unknown key; valid keys: fetch, name, protocol, synth, val_count "
        "(from conf/dataset/synthblur.yaml)"
    )


def test_choices_are_the_implementations_registries() -> None:
    """Every Literal choice of the config is exactly what the implementation accepts, in one place."""
    from benchmark.data.augment import AUGMENTATIONS
    from benchmark.data.layouts import LAYOUTS
    from benchmark.data.synth import PHOTOS
    from benchmark.scoring.metrics import SSIM_VARIANTS
    from benchmark.training.schedule import OPTIMIZERS, SCHEDULES
    from models.checkpoint import WRAPPER_KEYS

    assert set(typing.get_args(Augment)) == set(AUGMENTATIONS)
    assert set(typing.get_args(SsimVariant)) == set(SSIM_VARIANTS)
    assert set(typing.get_args(FetchLayout)) == set(LAYOUTS)
    assert set(typing.get_args(OptimizerName)) == set(OPTIMIZERS)
    assert set(typing.get_args(SchedulerName)) == set(SCHEDULES)
    assert set(typing.get_args(Photo)) == set(PHOTOS)
    assert set(typing.get_args(ReleaseFormat)) == {*WRAPPER_KEYS, "bare", "modules", "tensorflow", "caffe"}
    assert set(DATASET_NAMES) == {p.stem for p in (CONF_DIR / "dataset").glob("*.yaml")}
    assert set(typing.get_args(Recipe)) == {"common", "published"}


def test_every_alignment_choice_scores() -> None:
    from benchmark.scoring.protocol import score

    gt = torch.linspace(0, 1, 3 * 48 * 64).reshape(1, 3, 48, 64).sin().abs()
    for align in typing.get_args(Align):
        scores = score(
            gt.roll(1, dims=3), gt, ScoringProtocol(quantize="uint8", ssim_variant="gaussian2d", align=align)
        )
        assert set(scores) == {"psnr", "ssim"} and torch.isfinite(scores["psnr"]).all()


def test_cli_bad_value_exits_with_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.train",
            "train.batch_size=0",
            "tracking=none",
            f"paths.checkpoints={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: train.batch_size: must be > 0, got 0 (from the command line)" in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before any work


# --- recipes -----------------------------------------------------------------------------------------------------


def test_recipe_common_keeps_one_train_section_for_every_model() -> None:
    for model in ("nafnet_tiny", "hinet_tiny", "mprnet_tiny"):
        run = resolve_recipe(load_config([f"model={model}", "train=paper"]))
        assert run.train.profile == "paper" and run.train.optimizer.lr == 1e-4


@pytest.mark.parametrize(
    ("model", "profile", "lr", "batch", "augment"),
    [
        ("mimo_unet", "mimo_unet", 1e-4, 4, "hflip"),
        ("msfsnet", "paper", 1e-4, 4, "hflip"),
        ("nafnet_w64", "nafnet_w64", 1e-3, 64, "dihedral"),
        ("hinet", "hinet", 2e-4, 64, "dihedral"),
        ("mprnet", "mprnet", 2e-4, 16, "dihedral"),
        ("mprnet_tiny", "mprnet", 2e-4, 16, "dihedral"),
    ],
)
def test_recipe_published_takes_the_models_own_profile(
    model: str, profile: str, lr: float, batch: int, augment: str
) -> None:
    run = resolve_recipe(load_config([f"model={model}", "recipe=published", "train.device=cpu", "train.log_every=7"]))
    train = run.train
    assert (train.profile, train.optimizer.lr, train.batch_size, train.augment) == (profile, lr, batch, augment)
    # Execution keys stay as set on the command line; everything that changes the weights is the recipe's.
    assert (train.device, train.log_every) == ("cpu", 7)


def test_published_recipe_facts() -> None:
    def published(model: str):
        return resolve_recipe(load_config([f"model={model}", "recipe=published"])).train

    nafnet = published("nafnet_w32")
    assert nafnet.optimizer == OptimizerConfig(name="adamw", lr=1e-3, betas=(0.9, 0.9), eps=1e-8, weight_decay=1e-3)
    assert (nafnet.scheduler.name, nafnet.scheduler.min_lr, nafnet.max_steps) == ("cosine", 1e-7, 200_000)
    assert published("nafnet_w64").max_steps == 400_000
    hinet = published("hinet")
    assert (hinet.optimizer.name, hinet.optimizer.betas, hinet.scheduler.min_lr) == ("adam", (0.9, 0.99), 1e-7)
    mpr = published("mprnet")
    assert (mpr.scheduler.warmup_epochs, mpr.scheduler.min_lr, mpr.epochs) == (3, 1e-6, 3000)
    mimo = published("mimo_unet")
    assert (mimo.optimizer.name, mimo.scheduler.name, mimo.scheduler.step_epochs, mimo.epochs) == (
        "adam",
        "step",
        500,
        3000,
    )


def test_identity_has_no_recipe_and_keeps_the_common_section() -> None:
    run = resolve_recipe(load_config(["model=identity", "recipe=published"]))
    assert run.train.profile == "quick"


def test_bad_recipe_values_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"^recipe: must be one of common, published, got 'mine'"):
        load_config(["recipe=mine"])
    with pytest.raises(ConfigError, match=r"^model\.recipe: .*conf/train/nafnet_w128\.yaml does not exist"):
        resolve_recipe(load_config(["model=nafnet_tiny", "recipe=published", "model.recipe=nafnet_w128"]))


def test_every_model_recipe_names_a_train_profile() -> None:
    for name in list_models():
        recipe = compose([f"model={name}"]).model.recipe
        assert recipe is None or (CONF_DIR / "train" / f"{recipe}.yaml").is_file(), name


def test_benchmark_protocols_are_their_papers() -> None:
    gopro = load_config(["dataset=gopro"]).dataset.protocol
    assert (gopro.quantize, gopro.ssim_variant, gopro.extra_ssim_variants, gopro.align) == (
        "uint8",
        "gaussian2d",
        ("matlab3d",),
        "none",
    )
    assert "second SSIM column `matlab3d`" in gopro.describe()
    for name in ("realblur_j", "realblur_r"):
        realblur = load_config([f"dataset={name}"]).dataset.protocol
        assert realblur.align == "ecc" and "ECC homography" in realblur.describe()


# --- params.yaml -------------------------------------------------------------------------------------------------


def _params(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_params_file_reaches_every_section(tmp_path: Path) -> None:
    def edit(p: dict) -> None:
        p["train"]["max_steps"] = 7
        p["eval"]["batch_size"] = 3
        p["seed"] = 5
        p["paths"]["data"] = "/scratch/data"
        p["pipeline"]["models"] = ["identity", "mimo_unet_tiny"]
        p["figures"]["model"] = "mimo_unet_tiny"
        p["tracking"]["experiment"] = "other"

    run = load_config(["model=mimo_unet_tiny", f"params_file={_params(tmp_path, edit)}"])
    assert (run.train.max_steps, run.eval.batch_size, run.seed, run.paths.data) == (7, 3, 5, "/scratch/data")
    assert run.pipeline.models == ("identity", "mimo_unet_tiny") and run.tracking.experiment == "other"
    assert run.layout.dataset("synthblur") == Path("/scratch/data/synthblur")


def test_params_dataset_and_model_sections_reach_the_stages_of_their_name(tmp_path: Path) -> None:
    def edit(p: dict) -> None:
        p["dataset"]["val_count"] = 4
        # As `dvc exp run -S model=nafnet_tiny -S model.overrides.width=16` composes it (nafnet_tiny: width 8).
        p["model"] = {**compose(["model=nafnet_tiny"]).model, "overrides": {"width": 16}}

    path = _params(tmp_path, edit)
    naf = load_config(["model=nafnet_tiny", "dataset=synthblur", f"params_file={path}"])
    assert naf.model.overrides == {"width": 16} and naf.dataset.val_count == 4
    built = create_model("nafnet_tiny", **naf.model.constructor_kwargs())
    assert built.intro.weight.shape[0] == 16 and create_model("nafnet_tiny").intro.weight.shape[0] == 8
    mimo = load_config(["model=mimo_unet_tiny", "dataset=synthblur", f"params_file={path}"])
    assert mimo.model.constructor_kwargs() == {} and mimo.dataset.val_count == 4  # its own file, the edited dataset
    assert model_config(mimo, "nafnet_tiny").constructor_kwargs() == {}  # outside a stage of its own: conf/
    assert model_config(naf, "nafnet_tiny").overrides == {"width": 16}


def test_params_edit_of_a_model_no_stage_runs_is_refused(tmp_path: Path) -> None:
    def edit(p: dict) -> None:
        p["model"] = {**compose(["model=hinet_tiny"]).model, "overrides": {"width": 8}}

    path = _params(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_config([f"params_file={path}"])
    message = str(err.value)
    assert message.startswith("model.overrides.width: params.yaml changes model 'hinet_tiny', which no stage runs")
    assert message.endswith(f"(from {path})")


def test_params_invocation_keys_are_refused(tmp_path: Path) -> None:
    path = _params(tmp_path, lambda p: p.update(checkpoint="release"))
    with pytest.raises(ConfigError, match=r"^checkpoint: params.yaml sets it to 'release', but it is an argument"):
        load_config([f"params_file={path}"])
    # On the command line next to params_file they are what each stage sets.
    run = load_config(["tlc=[false,true]", "train_dataset=synthblur", f"params_file={REPO / 'params.yaml'}"])
    assert run.tlc_settings == (False, True) and run.train_dataset == "synthblur"


def test_params_file_allows_only_selections_on_the_command_line() -> None:
    with pytest.raises(ConfigError, match=r"^train\.max_steps: set on the command line together with params_file="):
        load_config(["train.max_steps=5", f"params_file={REPO / 'params.yaml'}"])
    with pytest.raises(ConfigError, match=r"^train: set on the command line together with params_file="):
        load_config(["train=paper", f"params_file={REPO / 'params.yaml'}"])


def test_params_unknown_keys_name_the_params_file(tmp_path: Path) -> None:
    path = _params(tmp_path, lambda p: p.update(trian={"max_steps": 3}))
    with pytest.raises(ConfigError, match=rf"^trian: unknown key; valid keys: .* \(from {path}\)$"):
        load_config([f"params_file={path}"])
    path = _params(tmp_path, lambda p: p["dataset"].update(val_cont=4))
    with pytest.raises(ConfigError, match=rf"^dataset\.val_cont: unknown key; .* \(from {path}\)$"):
        load_config([f"params_file={path}"])


def test_params_under_published_recipe_refuse_what_cannot_reach_a_stage(tmp_path: Path) -> None:
    def edit(**train):
        def apply(p: dict) -> None:
            p["recipe"] = "published"
            p["train"].update(train)

        return _params(tmp_path, apply)

    with pytest.raises(ConfigError, match=r"^train\.max_steps: recipe=published trains each model with its release"):
        load_config([f"params_file={edit(max_steps=5)}"])
    run = resolve_recipe(load_config(["model=nafnet_w32", f"params_file={edit(num_workers=3)}"]))
    assert (run.train.profile, run.train.num_workers) == ("nafnet_w32", 3)


def test_missing_params_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"params_file: .*nope\.yaml does not exist"):
        load_config([f"params_file={tmp_path / 'nope.yaml'}"])


def test_params_file_carries_the_pipeline_lists(tmp_path: Path) -> None:
    """`dvc exp run -S 'pipeline.models=[...]'` changes params.yaml only; the stages must read the lists from it."""

    def edit(p: dict) -> None:
        p["pipeline"]["models"] = ["identity"]
        p["figures"]["model"] = "identity"

    run = load_config([f"params_file={_params(tmp_path, edit)}"])
    assert run.pipeline.models == ("identity",)


def test_experiment_home_escapes_dvc_temporary_workspaces(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    workspace = repo / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    workspace.mkdir(parents=True)
    assert experiment_home(workspace) == repo.resolve()
    assert experiment_home(repo) == repo.resolve()
    assert experiment_home(tmp_path / "exps") == (tmp_path / "exps").resolve()
