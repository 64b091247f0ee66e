"""``genki recover``: a recorder killed with SIGKILL, its file made whole for every MCAP tool."""

from __future__ import annotations

import os
import signal
import time

import pytest
import yaml
from mcap.reader import SeekingReader, make_reader

from genki_signals.cli import main
from genki_signals.record import Recording, RecordingError
from genki_signals.record.recover import recover_recording

pytestmark = pytest.mark.timeout(90)


def mcap_package_read(path) -> tuple[int, Exception | None]:
    """How many messages the ``mcap`` package's own reader gets, and the error that stopped it."""
    count = 0
    with open(path, "rb") as f:
        try:
            for _ in make_reader(f).iter_messages():
                count += 1
        except Exception as exc:  # noqa: BLE001 - whatever the package raises is the finding
            return count, exc
    return count, None


@pytest.mark.process
def test_a_killed_recording_is_recovered_for_the_mcap_indexed_reader(tmp_path, launcher_factory,
                                                                      capsys):
    spec = tmp_path / "crash.yaml"
    spec.write_text(yaml.safe_dump({"name": "recover_test", "nodes": [
        {"id": "signals", "kind": "source",
         "params": {"type": "Sampler", "sample_rate": 200, "update_rate": 50,
                    "sources": {"x": {"type": "SineWave", "frequency": 2}}}},
        {"id": "victim", "kind": "recorder", "inputs": ["signals"],
         "params": {"path": "victim.mcap", "flush_interval": 0.2, "metadata": {"s": "01"}}}]}))
    lp = launcher_factory(spec)
    d = lp.wait_ready()
    victim = next(n for n in d["nodes"] if n["id"] == "victim")
    time.sleep(2.0)
    os.kill(victim["pid"], signal.SIGKILL)
    lp.interrupt()
    lp.wait_exit(timeout=30)
    crashed, out = tmp_path / "victim.mcap", tmp_path / "recovered.mcap"
    with Recording(crashed) as rec:
        salvaged = [(m.topic, m.log_time, m.publish_time, m.sequence,
                     [bytes(p) for p in m.parts]) for m in rec.messages()]
        assert not rec.report.complete
    assert len(salvaged) >= 40
    # the problem: the mcap package's reader stops at the torn tail / missing summary
    count, error = mcap_package_read(crashed)
    assert error is not None and count < len(salvaged), (count, error)
    assert main(["inspect", str(crashed), "--no-progress"]) == 0
    assert f"genki recover {crashed} <out.mcap>" in capsys.readouterr().out
    size_before = crashed.stat().st_size
    assert main(["recover", str(crashed), str(out), "--no-progress"]) == 0
    assert crashed.stat().st_size == size_before  # the input is left as it was
    assert f"wrote {out}: {len(salvaged)} messages on 1 topics" in capsys.readouterr().out
    with out.open("rb") as f:
        reader = make_reader(f)
        assert isinstance(reader, SeekingReader)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count == len(salvaged)
        got = [(c.topic, m.log_time, m.publish_time, m.sequence, m.data)
               for _, c, m in reader.iter_messages(log_time_order=False)]
        metadata = {r.name: r.metadata for r in reader.iter_metadata()}
    assert mcap_package_read(out) == (len(salvaged), None)
    with Recording(out) as rec:  # our reader sees the same messages, byte for byte
        again = [(m.topic, m.log_time, m.publish_time, m.sequence,
                  [bytes(p) for p in m.parts]) for m in rec.messages()]
        assert rec.report.complete and not rec.report.damaged
    assert again == salvaged
    assert [g[:4] for g in got] == [s[:4] for s in salvaged]
    assert metadata["genki.user"] == {"s": "01"}
    assert metadata["genki.recording"]["topology"] == "recover_test"
    assert metadata["genki.recovered"]["source"] == str(crashed)
    assert metadata["genki.recovered"]["complete"] == "false"


def test_recover_refuses_to_overwrite_its_input(tmp_path):
    from genki_signals.record import Recorder

    path = tmp_path / "a.mcap"
    with Recorder(path):
        pass
    with pytest.raises(RecordingError, match="writes a new file"):
        recover_recording(path, path)
