#!/bin/bash
# N workers of ONE Optuna study on a SLURM cluster: a job array whose every task runs the Hydra Optuna
# sweeper (hydra/sweeper=optuna, the distilkit sweeper plugin) against one shared study storage. Each
# worker asks the study for trials until it holds N_TRIALS in total, so the array as a whole runs
# N_TRIALS trials; a worker killed or pre-empted leaves its trial to the heartbeat (RDB storage), which
# fails it and re-enqueues its parameters for another worker.
#
#   sbatch --array=0-7 sweeps/slurm_array.sh                      # 8 workers, 1 GPU each
#   STORAGE=postgresql://user@dbhost/optuna sbatch --array=0-15 sweeps/slurm_array.sh data=sst2 data.path=/data/sst2
#
# Storage: an RDB URL every node reaches (PostgreSQL/MySQL: the safe choice for many workers; sqlite on
# a network file system locks badly) or journal:FILE (Optuna's journal file, fine on NFS/Lustre for a
# few dozen workers). Extra arguments are Hydra overrides for every trial. The MLflow store and the
# teacher cache must be shared too (paths.root_dir on the shared FS, or tracking.tracking_uri=a server):
# the first worker fine-tunes the teacher and stores its logits, the others wait on the cache's file
# lock and reuse them. Every trial of every worker uses the parameters Optuna sampled for it, and a trial
# is one process here (hardware=gpu); for multi-GPU trials run each worker under torchrun (see README).
#
#SBATCH --job-name=distilkit-sweep
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --signal=SIGUSR1@90          # Lightning's SLURMEnvironment: SIGUSR1 before the time limit
#SBATCH --requeue
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail

ROOT=${ROOT:-$PWD/sweep_root}                       # shared FS: MLflow store, caches, Hydra outputs
STORAGE=${STORAGE:-journal:$ROOT/optuna.journal}    # one study for every array task
STUDY=${STUDY:-kd_${SLURM_ARRAY_JOB_ID:-local}}
N_TRIALS=${N_TRIALS:-64}
HARDWARE=${HARDWARE:-gpu}
mkdir -p "$ROOT"

# Different trials per worker come from the study itself (TPE with constant_liar); the sampler seed
# only has to differ so that the start-up (random) trials differ.
srun python -m train -m \
    hydra/sweeper=optuna \
    "hydra.sweeper.storage=$STORAGE" \
    "hydra.sweeper.study_name=$STUDY" \
    "hydra.sweeper.n_trials=$N_TRIALS" \
    "hydra.sweeper.sampler.seed=${SLURM_ARRAY_TASK_ID:-0}" \
    "hardware=$HARDWARE" \
    "paths.root_dir=$ROOT" \
    "hydra.sweep.dir=$ROOT/multirun/$STUDY/worker_${SLURM_ARRAY_TASK_ID:-0}" \
    'loss.T=interval(1,8)' 'loss.alpha=interval(0.1,0.9)' 'student.num_layers=choice(2,3,4)' \
    "$@"
