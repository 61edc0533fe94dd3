"""Causal-LM distillation: a causal-LM teacher's token distributions train a smaller causal-LM student.

* models: ``AutoModelForCausalLM`` for teacher and student; teacher and student share one tokenizer
  (the student is built from the teacher; a student whose vocabulary differs is refused at start).
* stored teacher output: per token, the top ``top_k`` log-probs, their ids, the log of the remaining
  mass and the log-prob of the real next token (:mod:`distilkit.training.topk_store`), keyed by
  teacher, split content and k; ``top_k: null`` runs the full-vocabulary teacher online in training.
* what the loss receives: token logits, the teacher's form, next-token labels and the padding mask
  (:mod:`distilkit.training.lm_module`, :mod:`distilkit.losses.causal_lm`).
* metrics: dev/test perplexity of teacher and student (exp of the mean next-token NLL over real
  tokens), next-token top-1 agreement (student argmax = teacher's top-1), parameters, size on disk,
  bytes per token of the stored teacher output, and CPU generation speed at batch 1 (greedy, KV
  cache: time to first token, decode tokens/s; prompt and new-token counts logged as ``measure/gen_*``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM

from distilkit.data.module import SPLITS
from distilkit.errors import ConfigError, check, config_group
from distilkit.hashing import key_of
from distilkit.losses.causal_lm import ForwardKL, TokenCrossEntropy
from distilkit.measure.generation import generation_metrics
from distilkit.measure.lm_quality import mean_nll, next_token_predictions, perplexity, real_positions, state_dict_mb
from distilkit.measure.session import physical_cores
from distilkit.measure.size import num_parameters, saved_size_mb
from distilkit.models.tokenizer_check import tokenizer_mismatch
from distilkit.prune.ffn import FFNPruner
from distilkit.prune.heads import HeadPruner
from distilkit.prune.none import NoPruner
from distilkit.prune.vocab import FullVocab
from distilkit.quantize.ptq_static import PTQStaticQuantizer
from distilkit.tasks.base import Task
from distilkit.training.lm_module import LMDistillModule
from distilkit.training.console_log import stage
from distilkit.training.sequence_kd import SequenceStore, prompts_from, teacher_continuations
from distilkit.training.topk_store import FIELDS, TopKStore, bytes_per_token, teacher_topk

EVAL_SPLITS = ("dev", "test")
TEACHER_STORES = ("top_k", "sampled")


class CausalLM(Task):
    name = "causal_lm"
    model_class = AutoModelForCausalLM
    finetune_loss = TokenCrossEntropy

    def __init__(self, top_k: int | None = 32, generation: dict | None = None, keep_fp32: Sequence[str] = (),
                 sequence_kd: dict | None = None, teacher_store: str = "top_k"):
        check(top_k is None or top_k >= 1, "top_k", f"must be >= 1 or null (the full-vocabulary teacher online), got {top_k}")
        check(teacher_store in TEACHER_STORES, "teacher_store", f"must be one of {', '.join(TEACHER_STORES)}, got {teacher_store!r}")
        check(teacher_store == "top_k" or top_k is not None, "teacher_store",
              "sampled stores top_k draws per token; with top_k=null (the online teacher) use teacher_store=top_k")
        self.teacher_store = teacher_store
        gen = {"prompt_tokens": 32, "new_tokens": 32, "repeats": 3, **(generation or {})}
        for key in ("prompt_tokens", "new_tokens", "repeats"):
            check(gen[key] >= 1, f"generation.{key}", f"must be >= 1, got {gen[key]}")
        check(gen["new_tokens"] >= 2, "generation.new_tokens", f"must be >= 2 (decode speed needs tokens after the first), got {gen['new_tokens']}")
        self.top_k = top_k
        self.generation = gen
        seq = {"prompts": 0, "prompt_tokens": 16, "new_tokens": 48, **(sequence_kd or {})}
        check(seq["prompts"] >= 0, "sequence_kd.prompts", f"must be >= 0 (0: off), got {seq['prompts']}")
        for key in ("prompt_tokens", "new_tokens"):
            check(seq[key] >= 1, f"sequence_kd.{key}", f"must be >= 1, got {seq[key]}")
        self.sequence_kd = seq
        self.keep_fp32 = tuple(keep_fp32)  # the quantizers' default keep_fp32 under this task (conf/quantizer/*.yaml read it)

    @property
    def stored_k(self) -> int:
        """k of the store: ``top_k``, or 1 with an online teacher (dev/test metrics still come from the store)."""
        return self.top_k or 1

    def check_serves(self, objects: dict[str, object]) -> None:
        """Besides the task's groups: the sampled store is an unbiased estimate of forward KL at T = 1 only."""
        super().check_serves(objects)
        loss = objects["loss"]
        if self.teacher_store == "sampled" and not isinstance(loss, TokenCrossEntropy):
            check(isinstance(loss, ForwardKL) and loss.T == 1, "task.teacher_store",
                  f"sampled (frequencies of teacher draws) estimates forward KL at T=1 only, got {type(loss).__name__} "
                  f"T={getattr(loss, 'T', None)}; use loss=lm_fkl loss.T=1 or teacher_store=top_k")

    def options_hint(self, group: str) -> str:
        return {"data": "text_corpus", "teacher": "tiny_lm, smollm2", "student": "distil, scratch_lm",
                "loss": "lm_ce, lm_fkl, lm_rkl, lm_jsd, lm_skew_kl"}.get(group, "see README")

    # teacher and checks -------------------------------------------------------------------------
    def _check_against(self, config, data) -> None:
        seq = self.sequence_kd
        if seq["prompts"] and seq["prompt_tokens"] + seq["new_tokens"] > data.max_length:
            raise ConfigError("task.sequence_kd.new_tokens", f"prompt_tokens + new_tokens = {seq['prompt_tokens'] + seq['new_tokens']} "
                              f"is more than a block (data.max_length={data.max_length}); allowed: a sum <= {data.max_length}")
        context = getattr(config, "max_position_embeddings", None)
        if context is not None and data.max_length > context:
            raise ConfigError("data.max_length", f"is {data.max_length} but the teacher's context is {context} tokens; allowed 2..{context}")
        with config_group("task"):
            check(self.stored_k <= config.vocab_size, "top_k", f"is {self.top_k} but the teacher's vocabulary has {config.vocab_size} tokens; allowed 1..{config.vocab_size}")

    def teacher_config(self, run):
        with config_group("data"):
            run.data.splits  # reads the corpus: an empty one fails here
        with config_group("teacher"):
            config = run.teacher_spec.config()
        self._check_against(config, run.data)
        self._check_tokenizers(run)
        return config

    def _check_tokenizers(self, run) -> None:
        """A student that brings its own tokenizer (``student=pretrained_lm``) must tokenize as the teacher does:
        same token -> id mapping and special tokens, not only the same size (students built from the teacher share it)."""
        own = getattr(run.student_spec, "tokenizer", None)
        if not callable(own):
            return
        with config_group("student"):
            student_tokenizer = own()
        with config_group("teacher"):
            teacher_tokenizer = run.teacher_spec.tokenizer(run.data.texts("train"))
        mismatch = tokenizer_mismatch(teacher_tokenizer, student_tokenizer)
        check(mismatch is None, "student", f"tokenizer mismatch: {mismatch}; teacher and student must share one tokenizer "
              "(pick a student of the teacher's family, or student=distil / scratch_lm, built from the teacher)")

    def build_teacher(self, spec, data):
        return spec.build(data.texts("train"))

    def check_teacher(self, model, data) -> None:
        check(hasattr(model, "generate") and "CausalLM" in type(model).__name__, "teacher", f"{type(model).__name__} is not a causal LM")
        self._check_against(model.config, data)

    def check_student(self, student, teacher) -> None:
        check(
            student.config.vocab_size == teacher.config.vocab_size,
            "student",
            f"tokenizer mismatch: the student's vocabulary has {student.config.vocab_size} tokens, the teacher's "
            f"{teacher.config.vocab_size}; teacher and student must share one tokenizer (build the student from the teacher: "
            "student=distil or scratch_lm)",
        )

    def check_compressors(self, run, student) -> None:
        check(type(run.vocab) is FullVocab, "vocab", "task=causal_lm supports vocab=full in this version")
        check(isinstance(run.pruner, (NoPruner, HeadPruner, FFNPruner)), "pruner",
              f"{type(run.pruner).__name__} prunes BERT encoders; task=causal_lm narrows the student with pruner=heads (whole "
              "key/value head groups) or pruner=ffn (gated-MLP neurons), or pruner=none")
        check(not isinstance(run.quantizer, PTQStaticQuantizer), "quantizer",
              "ptq_static calibrates onnxruntime's static int8 kernels, but task=causal_lm deploys the student in torch "
              "(generation with the KV cache); use ptq_dynamic (int8), qat_int8 or qat_int4 (4-bit weights)")
        super().check_compressors(run, student)  # keep_fp32 and group sizes against the student's modules

    def module(self, student, loss, optimizer, scheduler=None, teacher=None, compressors=None, log_prefix: str = ""):
        return LMDistillModule(student, loss, optimizer=optimizer, scheduler=scheduler, teacher=teacher, compressors=compressors,
                               log_prefix=log_prefix, online_teacher=self.top_k is None)

    # stored teacher outputs -----------------------------------------------------------------------
    def teacher_outputs(self, run, teacher, teacher_key: str) -> dict[str, dict[str, torch.Tensor]]:
        if self.sequence_kd["prompts"]:  # the training split becomes the teacher's continuations (before its top-k is stored)
            run.data.replace_train(self.teacher_sequences(run, teacher, teacher_key))
        store = TopKStore(run.cfg.paths.cache_dir)
        out = {}
        for split in SPLITS:
            inputs = run.data.inputs(split)
            form = {"top_k": self.stored_k}
            sampled = self.teacher_store == "sampled" and split == "train"  # dev/test: exact top-k (agreement reads top-1)
            if sampled:
                form.update(teacher_store="sampled", seed=run.cfg.seed)
            key = key_of(teacher_key, split, inputs["input_ids"], inputs["attention_mask"], form)
            shape = (len(inputs["input_ids"]), run.data.max_length - 1, self.stored_k)
            generator = torch.Generator().manual_seed(run.cfg.seed) if sampled else None
            out[split] = store.get_or_compute(key, shape, lambda: teacher_topk(teacher, inputs, self.stored_k, generator=generator))
        return out

    def teacher_sequences(self, run, teacher, teacher_key: str) -> torch.Tensor:
        """Sequence-level KD blocks: corpus prompts + the teacher's greedy continuations, generated once and stored."""
        seq, data = self.sequence_kd, run.data
        prompts = prompts_from(data.encoded["train"]["input_ids"], seq["prompts"], seq["prompt_tokens"])
        key = key_of(teacher_key, "sequence_kd", prompts, {"new_tokens": seq["new_tokens"], "decoding": "greedy"})
        shape = (seq["prompts"], seq["prompt_tokens"] + seq["new_tokens"])

        def generate() -> dict:
            with stage(f"sequence KD: {seq['prompts']} teacher continuations of {seq['new_tokens']} tokens"):
                ids = teacher_continuations(teacher, prompts, seq["new_tokens"], data.pad_id)
            return {"input_ids": ids, "texts": data.tokenizer.batch_decode(ids[:, seq["prompt_tokens"]:])}

        return SequenceStore(run.cfg.paths.cache_dir).get_or_compute(key, shape, generate)["input_ids"]

    def attach(self, data, outputs) -> None:
        if self.top_k is not None:
            data.attach_teacher_outputs({name: outputs["train"][name] for name in FIELDS if name != "target"})

    # evaluation and measurements ------------------------------------------------------------------
    def predict(self, run, trained) -> dict[str, dict[str, torch.Tensor]]:
        """Per dev/test block: the student's log-prob of each real next token and its top-1 token."""
        return {split: next_token_predictions(trained, run.data.inputs(split)) for split in EVAL_SPLITS}

    def measure(self, run, teacher, teacher_key, outputs, predicted, converted, fp32_onnx, deploy_onnx) -> dict[str, float]:
        """Teacher and student (as trained: fp32 or fake-quantized) from the stored/predicted log-probs; with a
        quantizer, the converted torch model (the deployed one: int8 / int4 kernels) evaluated and timed too."""
        data, student = run.data, converted.float_model
        deployed = converted.torch_model if converted.torch_model is not student else None
        m: dict[str, float] = {}
        for split in EVAL_SPLITS:
            real = real_positions(data.inputs(split)["attention_mask"])
            m[f"teacher/{split}_ppl"] = perplexity(outputs[split]["target"], real)
            m[f"student/{split}_ppl"] = perplexity(predicted[split]["target"], real)
            m[f"student/{split}_nll"] = mean_nll(predicted[split]["target"], real)
            m[f"student/agreement_{split}"] = float((predicted[split]["top1"][real] == outputs[split]["indices"][..., 0][real].long()).float().mean())
            m[f"measure/{split}_tokens"] = int(real.sum())
            if deployed is not None:
                got = next_token_predictions(deployed, data.inputs(split))
                m[f"deploy/{split}_ppl"] = perplexity(got["target"], real)
                m[f"deploy/agreement_{split}"] = float((got["top1"][real] == outputs[split]["indices"][..., 0][real].long()).float().mean())
                m[f"deploy/top1_vs_student_{split}"] = float((got["top1"][real] == predicted[split]["top1"][real]).float().mean())
        for role, model in (("teacher", teacher), ("student", student)):
            m[f"{role}/params"] = num_parameters(model)
            m[f"{role}/size_mb"] = saved_size_mb(model)
        m["student/ppl_ratio_vs_teacher_dev"] = m["student/dev_ppl"] / m["teacher/dev_ppl"]
        m["measure/teacher_topk"] = self.top_k or 0
        m["measure/teacher_store_bytes_per_token"] = bytes_per_token(self.stored_k)
        m["measure/sequence_kd_prompts"] = self.sequence_kd["prompts"]
        m["measure/train_blocks"] = len(data.encoded["train"]["input_ids"])
        gen = self.generation
        first = data.encoded["dev"]["input_ids"][0]
        prompt = torch.tensor([first[: gen["prompt_tokens"]]], dtype=torch.long)
        threads = run.measure_spec.threads or physical_cores()
        timed = {"teacher": teacher, "student": student} | ({"deploy": deployed} if deployed is not None else {})
        m |= generation_metrics(timed, prompt, gen["new_tokens"], gen["repeats"], threads)
        m["student/gen_decode_speedup_vs_teacher"] = m["student/gen_decode_tokens_per_s"] / m["teacher/gen_decode_tokens_per_s"]
        m["deploy/bits"] = {"fp32": 32, "int8": 8, "int4": 4}[converted.precision]
        if deployed is not None:  # the quantizer's cost (perplexity) and gain (decode speed, bytes) vs the float student
            m["deploy/ppl_ratio_vs_student_dev"] = m["deploy/dev_ppl"] / m["student/dev_ppl"]
            m["deploy/gen_decode_speedup_vs_student"] = m["deploy/gen_decode_tokens_per_s"] / m["student/gen_decode_tokens_per_s"]
            m["deploy/state_dict_mb"] = state_dict_mb(deployed)
            m["student/state_dict_mb"] = state_dict_mb(student)
            m["deploy/size_ratio_vs_student"] = m["student/state_dict_mb"] / m["deploy/state_dict_mb"]
        return m

    def print_table(self, metrics: dict[str, float], run) -> None:
        rows = [("dev perplexity", "dev_ppl", "{:.2f}"), ("test perplexity", "test_ppl", "{:.2f}"), ("top-1 agreement (dev)", "agreement_dev", "{:.3f}"),
                ("params (M)", "params", "{:.2f}"), ("size (MB, safetensors)", "size_mb", "{:.2f}"), ("state dict (MB)", "state_dict_mb", "{:.2f}"),
                ("time to first token (ms)", "gen_ttft_ms", "{:.1f}"), ("decode (tokens/s)", "gen_decode_tokens_per_s", "{:.1f}")]
        roles = ("teacher", "student") + (("deploy",) if "deploy/dev_ppl" in metrics else ())
        table = Table(title="distilkit causal LM: teacher vs student" + (f" vs deployed int{int(metrics['deploy/bits'])} student" if len(roles) == 3 else ""),
                      caption=f"generation: batch 1, greedy, KV cache, prompt {int(metrics['measure/gen_prompt_tokens'])} tokens, "
                              f"{int(metrics['measure/gen_new_tokens'])} new, {int(metrics['measure/gen_threads'])} threads; teacher store: "
                              f"top-{int(metrics['measure/teacher_topk']) or 'full (online)'}")
        for column in ("metric", *roles):
            table.add_column(column, justify="right")
        for label, key, fmt in rows:
            cells = []
            for role in roles:
                value = metrics.get(f"{role}/{key}")
                value = value / 1e6 if value is not None and key == "params" else value
                cells.append("-" if value is None else fmt.format(value))
            if any(cell != "-" for cell in cells):
                table.add_row(label, *cells)
        Console().print(table)
