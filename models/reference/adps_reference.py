"""Reference Ambient DPS sampler (spec §1): numpy + onnxruntime, the executable form of the spec.

All randomness is passed in (ε_0, the mask, optional churn noise), so the Rust sampler
can be checked against it step for step. Dense operators only: the model's
dps_dense.onnx gives x0_hat, ‖y − A·vec(x0_hat)‖² and its gradient in one call.

    python models/reference/adps_reference.py --case tests/fixtures/golden/fmnist-p0.4/cases/cs
re-runs a golden case and prints the deviation from the stored x_N.
"""
import argparse
import json
import os

import numpy as np
import onnxruntime as ort


def edm_sigmas(n_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """σ_0 > … > σ_{N−1} (Karras et al. 2022, Eq. 5) followed by σ_N = 0, in float64."""
    i = np.arange(n_steps, dtype=np.float64)
    ramp = i / max(n_steps - 1, 1)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(s, 0.0)


class DenseModel:
    """dps_dense.onnx: (x_t, σ, mask, y, A) -> (x0_hat, residual_sq, grad of residual_sq)."""

    def __init__(self, folder):
        self.folder = folder
        with open(os.path.join(folder, "card.json")) as f:
            self.card = json.load(f)
        self.sess = ort.InferenceSession(os.path.join(folder, "dps_dense.onnx"),
                                         providers=["CPUExecutionProvider"])

    def __call__(self, x, sigma, mask, y, A):
        b = len(x)
        x0, rsq, grad = self.sess.run(None, {
            "x_t": x.astype(np.float32), "sigma": np.full(b, sigma, np.float32),
            "mask": mask.astype(np.float32), "y": y.astype(np.float32), "A": A.astype(np.float32)})
        return x0, rsq, grad


    def _aux(self, name):
        if not hasattr(self, "_sessions"):
            self._sessions = {}
        if name not in self._sessions:
            self._sessions[name] = ort.InferenceSession(os.path.join(self.folder, name),
                                                        providers=["CPUExecutionProvider"])
        return self._sessions[name]

    def denoise(self, x, sigma, mask):
        return self._aux("denoiser.onnx").run(None, {
            "x_t": x.astype(np.float32), "sigma": np.full(len(x), sigma, np.float32),
            "mask": mask.astype(np.float32)})[0]

    def vjp(self, x, sigma, mask, cotangent):
        """Jᵀc of the denoiser at (x, σ) (dps_vjp.onnx)."""
        return self._aux("dps_vjp.onnx").run(None, {
            "x_t": x.astype(np.float32), "sigma": np.full(len(x), sigma, np.float32),
            "mask": mask.astype(np.float32), "cotangent": cotangent.astype(np.float32)})[1]


def guided(model, x, sigma, mask, y, A, clip, clip_residual=False, norm="image"):
    """Direction d = (x − x0)/σ and DPS gradient g = ∇‖r‖ = ∇‖r‖²/(2‖r‖) (0 where ‖r‖ = 0).

    clip_residual: x0 is clipped to [-1, 1] before the residual too (the official code's
    static clipping; the gradient is 0 where x0 is clipped). Needs `model.vjp`.
    norm="batch": ‖r‖ over the whole batch as the official code takes it (couples the
    images: study only).
    """
    if clip_residual:
        x0 = model.denoise(x, sigma, mask)
        x0c = np.clip(x0, -1, 1)
        r = y.astype(np.float64) - x0c.reshape(len(x), -1).astype(np.float64) @ A.T.astype(np.float64)
        inside = (np.abs(x0) <= 1).astype(np.float64)
        # ∇‖r‖² = Jᵀ(−2 Aᵀr ⊙ 1[|x0| ≤ 1])
        cot = (-2 * (r @ A.astype(np.float64))).reshape(x.shape) * inside
        grad = model.vjp(x, sigma, mask, cot)
        rsq = (r ** 2).sum(axis=1)
    else:
        x0, rsq, grad = model(x, sigma, mask, y, A)
    rsq = rsq.astype(np.float64)
    if norm == "batch":
        rsq = np.full_like(rsq, rsq.sum())
    norm_ = np.sqrt(rsq)[:, None, None, None]
    g = np.where(norm_ > 0, grad / (2 * np.where(norm_ > 0, norm_, 1)), 0.0)
    x0_dir = np.clip(x0, -1, 1) if (clip or clip_residual) else x0
    return (x - x0_dir) / sigma, g


def adps_sample(model, eps0, mask, y, A, n_steps=10, zeta=1.0, solver="heun",
                sigma_min=0.002, sigma_max=80.0, rho=7.0, clip=False,
                s_churn=0.0, s_min=0.0, s_max=float("inf"), s_noise=1.0, churn_eps=None,
                clip_residual=False, norm="image", heun_guidance="average"):
    """A-DPS (spec §1). eps0, mask: [B,C,H,W]; y: [B,M]; A: [M, C·H·W]. Returns x at σ_N = 0.

    churn_eps: [N, B, C, H, W] noise for the churn steps, needed only when s_churn > 0.
    Study variants (defaults give the spec's update): clip_residual, norm (see `guided`),
    heun_guidance="after": the Heun predictor and corrector are unguided and −ζ·g(x̂) is
    applied once after the corrector (no gradient at the second evaluation).
    The state is kept in float32 between steps like the Rust sampler; arithmetic in float64.
    """
    sigma_min = max(sigma_min, model.card["sigma_min"])
    sigma_max = min(sigma_max, model.card["sigma_max"])
    t = edm_sigmas(n_steps, sigma_min, sigma_max, rho)
    x = (t[0] * eps0.astype(np.float64)).astype(np.float32)
    for i in range(n_steps):
        gamma = min(s_churn / n_steps, np.sqrt(2) - 1) if s_min <= t[i] <= s_max else 0.0
        t_hat = t[i] * (1 + gamma)
        x_hat = x.astype(np.float64)
        if gamma > 0:
            x_hat = x_hat + np.sqrt(t_hat**2 - t[i] ** 2) * s_noise * churn_eps[i]
        x_hat = x_hat.astype(np.float32)
        kw = dict(clip_residual=clip_residual, norm=norm)
        d_cur, g_cur = guided(model, x_hat, t_hat, mask, y, A, clip, **kw)
        x_next = x_hat + (t[i + 1] - t_hat) * d_cur - zeta * g_cur
        if solver == "heun" and i < n_steps - 1:  # 2nd-order correction (EDM Algorithm 2)
            if heun_guidance == "after":
                x_pred = x_hat + (t[i + 1] - t_hat) * d_cur
                d_prime, _ = guided(model, x_pred.astype(np.float32), t[i + 1], mask, y, A, clip, **kw)
                x_next = x_hat + (t[i + 1] - t_hat) * (d_cur + d_prime) / 2 - zeta * g_cur
            else:
                d_prime, g_prime = guided(model, x_next.astype(np.float32), t[i + 1], mask, y, A, clip, **kw)
                x_next = x_hat + (t[i + 1] - t_hat) * (d_cur + d_prime) / 2 - zeta * (g_cur + g_prime) / 2
        x = x_next.astype(np.float32)
    return x


# Dense forward operators (spec §1), columns indexed by vec of C·H·W in C order.

def cs_matrix(m, n, seed):
    """Gaussian compressed sensing, entries N(0, 1/M), from numpy default_rng(seed)."""
    return (np.random.default_rng(seed).standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)


def avgpool_matrix(f, shape):
    """sr:f: f×f average pooling; rows row-major over output pixels (c, i, j)."""
    c, h, w = shape
    A = np.zeros((c * (h // f) * (w // f), c * h * w), np.float32)
    for ch in range(c):
        for i in range(h // f):
            for j in range(w // f):
                row = (ch * (h // f) + i) * (w // f) + j
                for di in range(f):
                    for dj in range(f):
                        A[row, (ch * h + i * f + di) * w + j * f + dj] = 1.0 / (f * f)
    return A


def run_case(folder, model_folder=None):
    """Re-run a golden case folder (case.json + .npy) and return {solver: max |Δx_N|}."""
    with open(os.path.join(folder, "case.json")) as f:
        case = json.load(f)
    load = lambda key: np.load(os.path.join(folder, case["files"][key]))  # noqa: E731
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    model = DenseModel(model_folder or os.path.join(root, case["model_folder"]))
    out = {}
    for solver, spec in case["solvers"].items():
        x = adps_sample(model, load("eps0"), load("mask"), load("y"), load("A"), case["n_steps"],
                        case["zeta"], solver, case["sigma_min"], case["sigma_max"], case["rho"],
                        case["clip_x0"])
        out[solver] = float(np.abs(x - np.load(os.path.join(folder, spec["x_N"]))).max())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", required=True, help="golden case folder with case.json")
    ap.add_argument("--model", help="model folder (default: case.json's model_folder, relative to the repo root)")
    args = ap.parse_args()
    for solver, err in run_case(args.case, args.model).items():
        print(f"{args.case} {solver}: max |x_N - stored| = {err:.2e}")


if __name__ == "__main__":
    main()
