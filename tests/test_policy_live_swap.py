"""Loading a policy folder while a training run swaps the next save in: a swap caught between its
two renames is waited for, not reported as "a save was cut short"; one that stays cut is."""

import logging
import os
import threading
import time

from agentroute.training import lm_policy
from agentroute.training.lm_policy import read_whole_policy, whole_policy_dir


def _save(folder, text):
    folder.mkdir()
    (folder / "config.json").write_text(text)


def test_a_live_swap_loads_the_new_save_without_a_cut_short_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(lm_policy, "SWAP_GRACE_S", 30.0, raising=False)  # a loaded CI machine may not run the thread in 0.25 s
    target, old, partial = tmp_path / "policy", tmp_path / "policy.old", tmp_path / "policy.partial"
    _save(target, "first")
    _save(partial, "second")
    os.replace(target, old)  # save_atomically's first rename: the reader arrives now

    def second_rename():
        time.sleep(0.03)  # a busy machine between the two renames
        os.replace(partial, target)

    swapper = threading.Thread(target=second_rename)
    swapper.start()
    with caplog.at_level(logging.WARNING, logger=lm_policy.__name__):
        text = read_whole_policy(target, lambda folder: (folder / "config.json").read_text())
    swapper.join()
    assert text == "second"
    assert "cut short" not in caplog.text


def test_a_swap_cut_for_good_loads_the_previous_save_and_says_so(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(lm_policy, "SWAP_GRACE_S", 0.02)
    target, old = tmp_path / "policy", tmp_path / "policy.old"
    _save(old, "first")  # kill -9 between the renames: the new save never came
    with caplog.at_level(logging.WARNING, logger=lm_policy.__name__):
        assert whole_policy_dir(target) == old
    assert "a save was cut short" in caplog.text
    assert old.is_dir() and not target.exists()  # a reader moves nothing


def test_a_whole_folder_loads_at_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(lm_policy, "SWAP_GRACE_S", 30.0, raising=False)  # waiting at all would show, whatever the load
    _save(tmp_path / "policy", "first")
    _save(tmp_path / "policy.old", "stale")  # a reader must not look at it while the save is whole
    start = time.monotonic()
    assert whole_policy_dir(tmp_path / "policy") == tmp_path / "policy"
    assert time.monotonic() - start < 10 and not caplog.text
