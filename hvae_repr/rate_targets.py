"""Training to target rates: each targeted layer's beta is a Lagrange multiplier found during training.

--target_rates=r1,r2,... (nats per example, z1 first; "-" keeps that layer's beta at its --betas value)
asks for E[R_l] = r_l. The loss D + sum_l beta_l R_l is the Lagrangian of "minimize D subject to
R_l = r_l", and each targeted beta is adapted by dual ascent after every training step, as in GECO
(Rezende & Viola 2018, "Taming VAEs"):

    ema_l    <- decay * ema_l + (1 - decay) * R_l(batch)          (the first step sets it to R_l)
    log b_l  <- clip(log b_l + step * log((ema_l + c) / (r_l + c)), log low, log high)

with c = RATE_OFFSET_NATS. The ascent runs on log beta (beta stays positive) against the log ratio of
the averaged and the target rate, which makes the step scale-free: near the target it is the relative
error (ema - r) / (r + c), and d log(R + c) / d log beta is of order -1 for layers of any size (a
Gaussian layer loses about half a nat per active dimension per e-fold of beta), so one step size serves
a 150-nat z1 and a 3-nat z2. c = 1 nat keeps a target near 0 a finite goal. The fixed point is
ema = r whatever the transform. The betas stay inside --beta_range; during the KL warm-up the average
is kept but the betas do not move (the warm-up, not the multiplier, holds the rates down then).

A beta that sits at an edge of its range for the last quarter of the training steps did not find the
target: the rate there is still off and the result says so ("reached": false, "pinned": "low" or "high").
The multipliers, averages and counters are tf.Variables of a tf.Module that the run's checkpoint holds
(hvae_repr.rate_controller), so a resumed run continues exactly where the interrupted one stopped. This
module, the targets' parsing, checks and reports, loads no TensorFlow (the configs use it).
"""
import math

RATE_OFFSET_NATS = 1.0     # c above
RELATIVE_TOLERANCE = 0.05  # a target counts as reached within 5% or ...
ABSOLUTE_TOLERANCE = 0.3   # ... 0.3 nats, whichever is larger (the criterion)
PINNED_FRACTION = 0.25     # at an edge of the beta range for this last fraction of the steps: unreachable
FIXED = "-"


def parse_targets(texts, num_layers):
    """The --target_rates texts as normalized strings (a number in %g or "-"); ValueError (one line)."""
    texts = tuple(str(t).strip() for t in texts)
    if not texts:
        return ()
    if len(texts) != num_layers:
        raise ValueError(f"--target_rates has {len(texts)} values but --latent_dims has {num_layers} layers; give "
                         f"one rate per layer in nats, z1 first, or - to keep that layer's beta fixed")
    out = []
    for l, text in enumerate(texts):
        if text == FIXED:
            out.append(FIXED)
            continue
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < 0:
            raise ValueError(f"--target_rates: the target of z{l + 1} must be a finite rate >= 0 in nats or - "
                             f"(got {text!r})")
        out.append(f"{value:g}")
    if all(t == FIXED for t in out):
        raise ValueError("--target_rates keeps every layer fixed (all -); give at least one rate, or leave "
                         "--target_rates out")
    return tuple(out)


def targets_of(texts):
    """[float or None] per layer from normalized --target_rates texts."""
    return [None if t == FIXED else float(t) for t in texts]


def tolerance(target):
    return max(RELATIVE_TOLERANCE * target, ABSOLUTE_TOLERANCE)


def check_config(config):
    """ValueError (one line) for targets that cannot be trained; called by TrainConfig."""
    model = config.model
    if model.conditional_betas:
        raise ValueError("--target_rates needs a model trained at fixed betas; a --conditional_betas model is "
                         "trained for every beta: find its betas for given rates with python -m evaluation.target")
    low, high = model.beta_range
    for l, (target, beta) in enumerate(zip(targets_of(config.target_rates), config.betas)):
        if target is not None and not low <= beta <= high:
            raise ValueError(f"the starting beta of z{l + 1} ({beta:g}, from --betas) lies outside --beta_range "
                             f"{low:g},{high:g}; start inside the range or widen it")
    if not config.target_dual_step > 0:
        raise ValueError(f"--target_dual_step must be positive (got {config.target_dual_step})")
    if not 0 <= config.target_rate_decay < 1:
        raise ValueError(f"--target_rate_decay must lie in [0, 1) (got {config.target_rate_decay})")


def add_to_result(result, controller, total_steps):
    """train_result.json with targets: "betas" become the final ones (the starting ones are kept as
    "initial_betas") and "target_rates" holds the report; a target not reached is also a "warning"."""
    result["initial_betas"] = result["betas"]
    result["betas"] = by_layer([float(b) for b in controller.betas()])
    result["target_rates"] = section = controller.report(result["test"]["rate_nats"], total_steps)
    if section["unreachable"] or section["missed"]:
        result["target_rates_warning"] = "; ".join(section["unreachable"] + section["missed"])
    return result


def annotate_evaluation(result, config, workdir):
    """eval_result.json of a --target_rates run: "betas" are the final ones (from train_result.json) and
    "target_rates" compares each target with the evaluated test-set rate (no-op for other runs)."""
    if not config.target_rates:
        return result
    from hvae_repr import io_utils
    from hvae_repr.runs import RunDir
    trained = io_utils.read_json(RunDir(workdir).file(RunDir.TRAIN_RESULT))
    result["initial_betas"], result["betas"] = result["betas"], dict(trained["betas"])
    layers = {}
    for name, v in trained["target_rates"]["layers"].items():
        if not v["adapted"]:
            layers[name] = {"target_nats": None, "adapted": False}
            continue
        achieved = float(result["rates"]["rate_nats"][name]["mean"])
        layers[name] = {"target_nats": v["target_nats"], "achieved_test_nats": achieved,
                        "error_nats": achieved - v["target_nats"], "tolerance_nats": tolerance(v["target_nats"]),
                        "reached": bool(abs(achieved - v["target_nats"]) <= tolerance(v["target_nats"])),
                        "pinned": v["pinned"], "adapted": True}
    result["target_rates"] = {"layers": layers, "unreachable": list(trained["target_rates"]["unreachable"]),
                              "missed": list(trained["target_rates"].get("missed", [])),
                              "all_reached": all(v["reached"] for v in layers.values() if v["adapted"])}
    return result


def epoch_text(line):
    """The betas of an epoch's metrics line, for its log line ('' without targets)."""
    if "betas" not in line:
        return ""
    return "  betas " + " ".join(f"{k}={v:.3g}" for k, v in sorted(line["betas"].items(), reverse=True))


def unreachable_line(name, target, achieved, pinned, low, high):
    """One line saying that a target is out of reach and what to do."""
    rate = f"R({name})"
    if pinned == "low":
        why, fix = (f"even at the smallest beta ({low:g}) the rate is {achieved:.3g} nats",
                    "lower the target or the --beta_range's LOW")
    else:
        why, fix = (f"even at the largest beta ({high:g}) the rate is {achieved:.3g} nats",
                    "raise the target or the --beta_range's HIGH")
    return f"target {rate} = {target:g} nats not reached: {why} ({pinned} edge of --beta_range for the last " \
           f"{PINNED_FRACTION:.0%} of training); {fix}"


def missed_line(name, target, achieved, train_average, beta):
    """One line saying why a target inside the beta range was missed on the test set, and what to do."""
    head = f"target R({name}) = {target:g} nats not reached on the test set ({achieved:.3g} nats, beta {beta:.3g})"
    if abs(train_average - target) <= tolerance(target):
        return (f"{head}, though the training batches' rate average met it ({train_average:.3g}): the test rate "
                f"differs from the training rate by {achieved - train_average:+.3g} nats; shift the target by that")
    return (f"{head}; the training batches' rate average ended at {train_average:.3g}: train longer or raise "
            f"--target_dual_step")


def format_lines(result):
    """Lines for the end-of-training table: each target beside its achieved rate and final beta."""
    section = result.get("target_rates")
    if not section:
        return []
    rows = [f"{'target':<8}{'rate (nats)':>12}{'achieved':>10}{'beta':>9}  status"]
    for name in sorted(section["layers"], key=lambda k: int(k[1:]), reverse=True):
        v = section["layers"][name]
        if not v["adapted"]:
            rows.append(f"{name:<8}{'-':>12}{'':>10}{v['beta']:>9.3g}  fixed")
            continue
        status = "reached" if v["reached"] else f"not reached (pinned {v['pinned']})" if v["pinned"] else \
            f"not reached (off by {v['error_nats']:+.3g} nats, tolerance {v['tolerance_nats']:.3g})"
        rows.append(f"{name:<8}{v['target_nats']:>12.3g}{v['achieved_test_nats']:>10.3f}{v['beta']:>9.3g}  {status}")
    return rows + [f"warning: {line}" for line in section["unreachable"] + section.get("missed", [])]


def by_layer(values):
    return {f"z{l + 1}": v for l, v in enumerate(values)}
