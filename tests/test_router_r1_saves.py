"""``save_atomically`` cut between its two renames (``kill -9``): the previous policy comes back."""

from __future__ import annotations

from agentroute.routers.router_r1.trainer import restore_swap, save_atomically


def _writes(text):
    return lambda folder: (folder.mkdir(), (folder / "weights").write_text(text))


def _killed_between_the_renames(tmp_path):
    """What a kill -9 after ``policy`` → ``policy.old`` and before ``policy.partial`` → ``policy`` leaves."""
    target = tmp_path / "policy"
    save_atomically(target, _writes("first"))
    target.rename(tmp_path / "policy.old")
    _writes("second")(tmp_path / "policy.partial")
    return target


def test_a_save_cut_after_a_swap_was_cut_keeps_the_previous_policy(tmp_path):
    """Was: the next save removed policy.old (the only whole policy) before its own write was done;
    a Ctrl-C in that write left no policy at all."""
    target = _killed_between_the_renames(tmp_path)

    def dies_half_way(folder):
        folder.mkdir()
        raise KeyboardInterrupt

    try:
        save_atomically(target, dies_half_way)
    except KeyboardInterrupt:
        pass
    assert (target / "weights").read_text() == "first"


def test_the_next_save_after_a_cut_swap_replaces_it_and_leaves_one_folder(tmp_path):
    target = _killed_between_the_renames(tmp_path)
    save_atomically(target, _writes("third"))
    assert (target / "weights").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]


def test_restore_swap_leaves_a_whole_target_alone(tmp_path):
    target = tmp_path / "policy"
    save_atomically(target, _writes("first"))
    _writes("stale")(tmp_path / "policy.old")
    restore_swap(target)
    assert (target / "weights").read_text() == "first"


def test_a_rerun_puts_back_the_warm_up_a_cut_swap_moved_aside(tmp_path):
    """``train router-r1`` looks at OUT/sft before anything loads (``--resume`` skips a finished
    warm-up): was a missing sft/ beside sft.old, so the warm-up would run again."""
    import pytest

    from agentroute.errors import ConfigurationError
    from agentroute.routers.router_r1.trainer import train_router_r1

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("pool: []\nsft: {enabled: true}\n")
    out = tmp_path / "out"
    out.mkdir()
    _writes("warm-up")(out / "sft.old")
    with pytest.raises(ConfigurationError, match="--resume: no GRPO checkpoint"):
        train_router_r1(recipe, out, resume=True, log=lambda _: None)
    assert (out / "sft" / "weights").read_text() == "warm-up" and not (out / "sft.old").exists()


def test_resume_takes_the_last_whole_grpo_checkpoint(tmp_path):
    """A checkpoint cut short (no trainer_state.json: TRL writes it last) is passed over; was: TRL's
    get_last_checkpoint picked it and the resume failed loading it."""
    from agentroute.routers.router_r1.trainer import last_grpo_checkpoint

    for step, whole in ((2, True), (10, True), (11, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        if whole:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert last_grpo_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert last_grpo_checkpoint(tmp_path / "none") is None
