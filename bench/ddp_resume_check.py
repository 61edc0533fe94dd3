"""Manual check (issue 9): a ddp_cpu run SIGKILLed (whole process group) after its first checkpoint, resumed, vs uninterrupted.

    PYTHONPATH=src python bench/ddp_resume_check.py /tmp/ddp-resume

Not in make test (three 2-process runs take minutes on 2 cores). Prints both runs' final metrics and whether they are equal.
"""
import os, signal, subprocess, sys, time, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ROOT, tiny_overrides
tmp = Path(sys.argv[1]); tmp.mkdir(parents=True, exist_ok=True)
cache, root, marker = tmp / "cache", tmp / "killed", tmp / "stalled"
# 64 rows / (2 ranks x 16) = 2 steps per epoch; 4 epochs = 8 steps; checkpoint every 3 (epoch 1, batch 0 done)
common = ["hardware=ddp_cpu", "trainer.max_epochs=4", "checkpoint.every_n_steps=3", f"paths.cache_dir={cache}"]
stall = ["+callbacks.stall._target_=test_resume.StallOnce", "+callbacks.stall.after_step=3", f"+callbacks.stall.marker={marker}"]
env = {**os.environ, "PYTHONPATH": f"{ROOT}/src:{ROOT}/tests", "OMP_NUM_THREADS": "1"}
def train(*o, **kw):
    return subprocess.Popen([sys.executable, "-m", "train", *tiny_overrides(root if "ref" not in kw else tmp / "ref", *o)], cwd=ROOT, env=env, start_new_session=True,
                            stdout=open(tmp / f"{kw.get('name','x')}.out", "w"), stderr=subprocess.STDOUT)
t0 = time.time()
p = train(*common, *stall, name="killed")
while not marker.exists():
    assert p.poll() is None, "exited"; time.sleep(0.5)
print("ckpts", [x.name for x in (root / "checkpoints").glob("*/*.ckpt")], time.time() - t0, flush=True)
os.killpg(p.pid, signal.SIGKILL); p.wait()
p = train(*common, *stall, "resume=true", name="resumed"); print("resume rc", p.wait(), time.time() - t0, flush=True)
p = train(*common, ref=1, name="ref"); print("ref rc", p.wait(), time.time() - t0, flush=True)
import mlflow
def metrics(r):
    mlflow.set_tracking_uri(f"sqlite:///{r}/mlflow.db"); df = mlflow.search_runs(search_all_experiments=True)
    return df
a, b = metrics(root), metrics(tmp / "ref")
print("runs", len(a), list(a["status"]), a.get("tags.resumed_from_step").tolist())
keys = [c for c in a.columns if c.startswith("metrics.") and not any(t in c for t in ("latency", "throughput", "_ms", "speedup", "samples", "time_s", "threads"))]
diff = {k: (a[k][0], b[k][0]) for k in keys if a[k][0] != b[k][0]}
print("metrics compared", len(keys), "differing", diff)
