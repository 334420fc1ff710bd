"""Multi-view geometry on unit bearing vectors: what the camera solve of 360 footage is made of.

A 360 camera sees every direction, so its observations are unit bearings, not pixels:
none of the pinhole tools (which need points in front of an image plane) apply. The
conventions (those of the camera solve, camera_motion.py):

- a camera pose is (R, c): a direction d of the camera's equirect image points along
  R @ d in the world, and c is the camera centre;
- a world point X is seen along the bearing (R.T @ (X - c)) / |X - c|;
- residuals are angles: the observed bearing's tangent-plane coordinates of the
  predicted one (radians, two per observation).

Functions here are pure numpy, batched, deterministic (random samples come from the
caller's generator): rotation vectors, bearings of equirect pixels, rotation-only and
essential-matrix RANSAC, triangulation, robust pose refinement (resection) and a small
bundle adjustment (Gauss-Newton with the Schur complement on the points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAUCHY_SCALE = 1.0  # robust loss scale, in units of the caller's angular noise


def skew(v: np.ndarray) -> np.ndarray:
    """[..., 3, 3] cross-product matrices of vectors [..., 3]."""
    v = np.asarray(v, dtype=np.float64)
    zero = np.zeros(v.shape[:-1])
    return np.stack([np.stack([zero, -v[..., 2], v[..., 1]], -1),
                     np.stack([v[..., 2], zero, -v[..., 0]], -1),
                     np.stack([-v[..., 1], v[..., 0], zero], -1)], -2)


def rotation_matrix(vector: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] of rotation vectors [..., 3] (axis times angle, radians)."""
    vector = np.asarray(vector, dtype=np.float64)
    angle = np.linalg.norm(vector, axis=-1)[..., None, None]
    k = skew(vector)
    small = angle < 1e-8
    safe = np.where(small, 1.0, angle)
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, (1.0 - np.cos(safe)) / safe ** 2)
    return np.eye(3) + a * k + b * (k @ k)


def rotation_vector(matrix: np.ndarray) -> np.ndarray:
    """Rotation vector [3] of a rotation matrix (the inverse of rotation_matrix)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    cos = np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    if angle < 1e-6:
        return axis / 2.0
    if angle > np.pi - 1e-4:  # near pi: the axis is the dominant column of R + I
        column = (matrix + np.eye(3))[:, int(np.argmax(np.diag(matrix)))]
        return angle * column / np.linalg.norm(column)
    return angle * axis / (2.0 * np.sin(angle))


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (degrees) of the rotation taking `a` to `b` (3 x 3 each)."""
    cos = np.clip((np.trace(np.asarray(a).T @ np.asarray(b)) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def equirect_bearings(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Unit bearings [N, 3] of continuous equirect image coordinates (pixel centres at c + 0.5)."""
    theta = np.pi * np.asarray(y, dtype=np.float64) / height
    phi = 2.0 * np.pi * (0.5 - np.asarray(x, dtype=np.float64) / width)
    sin_theta = np.sin(theta)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), np.cos(theta)], -1)


def bearing_pixels(bearings: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous (x, y) of unit bearings [N, 3] (the inverse of equirect_bearings; x in [0, W))."""
    b = np.asarray(bearings, dtype=np.float64)
    theta = np.arccos(np.clip(b[..., 2] / np.linalg.norm(b, axis=-1), -1.0, 1.0))
    phi = np.arctan2(b[..., 1], b[..., 0])
    return np.mod(0.5 - phi / (2.0 * np.pi), 1.0) * width, theta / np.pi * height


def tangent_bases(bearings: np.ndarray) -> np.ndarray:
    """[N, 3, 2] orthonormal bases of the tangent planes at unit bearings [N, 3]."""
    b = np.asarray(bearings, dtype=np.float64)
    helper = np.where(np.abs(b[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(helper, b)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(b, e1)
    return np.stack([e1, e2], -1)


def procrustes_rotation(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The rotation Q minimising sum w |a_i - Q b_i|^2 (Kabsch) for vectors [N, 3]."""
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=np.float64)
    h = (np.asarray(b) * w[:, None]).T @ np.asarray(a)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def ransac_rotation(a: np.ndarray, b: np.ndarray, threshold: float, rng: np.random.Generator,
                    hypotheses: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(Q, inliers): the rotation with a ~ Q b for most bearing pairs [N, 3] (angles under `threshold` rad).

    Two-point samples, scored by inlier count, refined by Procrustes on the inliers.
    """
    count = len(a)
    if count < 2:
        return np.eye(3), np.zeros(count, bool)
    best, best_inliers = np.eye(3), np.zeros(count, bool)
    cos_threshold = np.cos(threshold)
    for _ in range(hypotheses):
        pick = rng.choice(count, 2, replace=False)
        q = procrustes_rotation(a[pick], b[pick])
        inliers = np.einsum("ij,ij->i", a, b @ q.T) > cos_threshold
        if inliers.sum() > best_inliers.sum():
            best, best_inliers = q, inliers
    if best_inliers.sum() >= 2:
        for _ in range(3):
            best = procrustes_rotation(a[best_inliers], b[best_inliers])
            best_inliers = np.einsum("ij,ij->i", a, b @ best.T) > cos_threshold
    return best, best_inliers


def epipolar_errors(essential: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Angles (rad) of bearings from their epipolar planes, the larger of both views, for E [..., 3, 3]."""
    n1 = np.einsum("...ij,nj->...ni", essential, b2)  # plane normal in view 1
    n2 = np.einsum("...ji,nj->...ni", essential, b1)  # plane normal in view 2
    e1 = np.abs(np.einsum("ni,...ni->...n", b1, n1)) / np.maximum(np.linalg.norm(n1, axis=-1), 1e-12)
    e2 = np.abs(np.einsum("ni,...ni->...n", b2, n2)) / np.maximum(np.linalg.norm(n2, axis=-1), 1e-12)
    return np.arcsin(np.clip(np.maximum(e1, e2), 0.0, 1.0))


def _essential_from_samples(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Essential matrices [K, 3, 3] from K samples of 8 (or more) bearing pairs [K, M, 3] (8-point)."""
    rows = np.einsum("kmi,kmj->kmij", b1, b2).reshape(b1.shape[0], b1.shape[1], 9)
    _, _, vt = np.linalg.svd(rows)
    e = vt[:, -1].reshape(-1, 3, 3)
    u, _, vt = np.linalg.svd(e)
    return u @ np.diag([1.0, 1.0, 0.0]) @ vt


def ransac_essential(b1: np.ndarray, b2: np.ndarray, threshold: float, rng: np.random.Generator,
                     hypotheses: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(E, inliers) with b1.T E b2 = 0 for most bearing pairs (view-1 and view-2 bearings [N, 3]).

    E = [tau]x Q, Q taking view-2 directions to view 1, tau the second centre in view 1.
    Eight-point samples, scored by inliers within `threshold` rad, refitted on the inliers.
    """
    count = len(b1)
    if count < 8:
        return np.eye(3), np.zeros(count, bool)
    picks = np.stack([rng.choice(count, 8, replace=False) for _ in range(hypotheses)])
    candidates = _essential_from_samples(b1[picks], b2[picks])
    errors = epipolar_errors(candidates, b1, b2)
    scores = (errors < threshold).sum(axis=1)
    best = int(np.argmax(scores))
    essential, inliers = candidates[best], errors[best] < threshold
    for _ in range(3):
        if inliers.sum() < 8:
            break
        essential = _essential_from_samples(b1[inliers][None], b2[inliers][None])[0]
        inliers = epipolar_errors(essential, b1, b2) < threshold
    return essential, inliers


def two_view_depths(q: np.ndarray, tau: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depths (l1, l2) along b1 and b2 of the midpoint triangulation of l1 b1 = tau + l2 Q b2."""
    d2 = b2 @ q.T
    # least squares of l1 b1 - l2 d2 = tau, per pair: a 2 x 2 system
    a11 = np.ones(len(b1))
    a12 = -np.einsum("ij,ij->i", b1, d2)
    a22 = np.ones(len(b1))
    r1 = b1 @ tau
    r2 = -(d2 @ tau)
    det = a11 * a22 - a12 * a12
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)
    l1 = (a22 * r1 - a12 * r2) / det
    l2 = (a11 * r2 - a12 * r1) / det
    return l1, l2


def decompose_essential(essential: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, tau unit) of an essential matrix: the one of four that puts most points ahead in both views."""
    u, _, vt = np.linalg.svd(essential)
    if np.linalg.det(u) < 0:
        u = -u
    if np.linalg.det(vt) < 0:
        vt = -vt
    w = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    best, best_count = (np.eye(3), u[:, 2]), -1
    for q in (u @ w @ vt, u @ w.T @ vt):
        for tau in (u[:, 2], -u[:, 2]):
            l1, l2 = two_view_depths(q, tau, b1, b2)
            count = int(((l1 > 0) & (l2 > 0)).sum())
            if count > best_count:
                best, best_count = (q, tau), count
    return best


def triangulate(centres: np.ndarray, directions: np.ndarray, point_index: np.ndarray,
                points: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares intersection of rays: (X [P, 3], condition [P]) for rays [N] of `point_index`.

    `centres`, `directions` [N, 3] (world, unit directions). Minimises the summed squared
    distance of X from its rays. `condition`: the smallest eigenvalue of the normal
    matrix over the number of rays (about the squared sine of the rays' spread; 0 when
    the rays are parallel).
    """
    projector = np.eye(3)[None] - np.einsum("ni,nj->nij", directions, directions)
    a = np.zeros((points, 3, 3))
    b = np.zeros((points, 3))
    np.add.at(a, point_index, projector)
    np.add.at(b, point_index, np.einsum("nij,nj->ni", projector, centres))
    counts = np.maximum(np.bincount(point_index, minlength=points), 1)
    eigen = np.linalg.eigvalsh(a)[:, 0] / counts
    a = a + 1e-12 * np.eye(3)[None]
    return np.linalg.solve(a, b[..., None])[..., 0], eigen


def angular_residuals(rotations: np.ndarray, centres: np.ndarray, points: np.ndarray,
                      bearings: np.ndarray, bases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(residuals [N, 2], predicted vectors v [N, 3]) of observations: per-observation R, c, X, bearing, basis."""
    offset = points - centres
    v = sum(rotations[:, j] * offset[:, j, None] for j in range(3))  # R.T (X - c), written out: einsum is slow here
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return sum(bases[:, i] * unit[:, i, None] for i in range(3)), v


def _jacobians(rotations, v, bases, residuals):
    """d residual / d (rotation, centre) [N, 2, 6] and d residual / d point [N, 2, 3], at the
    `residuals` and v of `angular_residuals`."""
    norm = np.maximum(np.linalg.norm(v, axis=1), 1e-12)
    unit = v / norm[:, None]
    # d residual / d v: the bases projected off the bearing (each residual is the bases' component
    # along it), over the distance; written out: numpy's einsum and matmul are slow on millions of
    # 2x3 products.
    g = (bases.transpose(0, 2, 1) - residuals[:, :, None] * unit[:, None, :]) / norm[:, None, None]  # [N, 2, 3]
    d_point = sum(g[:, :, j, None] * rotations[:, None, :, j] for j in range(3))  # d v / d X = R.T
    d_rotation = np.cross(g, v[:, None, :])  # g @ skew(v)
    return np.concatenate([d_rotation, -d_point], axis=2), d_point


def _weighted_rows(weights, jacobian, residuals):
    """Per observation, w J.T r [N, i] of a Jacobian [N, 2, i] and residuals [N, 2]."""
    wr = residuals * weights[:, None]
    return jacobian[:, 0] * wr[:, 0, None] + jacobian[:, 1] * wr[:, 1, None]


def _outer_sums(weights, a, b):
    """Per observation, sum_k w a[:, k, :, None] b[:, k, None, :]: the weighted products [N, i, j] of
    Jacobians [N, 2, i] and [N, 2, j] (two residual rows, written out)."""
    wa = a * weights[:, None, None]
    return wa[:, 0, :, None] * b[:, 0, None, :] + wa[:, 1, :, None] * b[:, 1, None, :]


class _RowSums:
    """Sums of per-observation rows [N, ...] per index (a pose's or a point's): sorted segments,
    computed once per bundle adjustment (np.add.at is slow)."""

    def __init__(self, index: np.ndarray, count: int):
        self.order = np.argsort(index, kind="stable")
        self.present, self.starts = np.unique(index[self.order], return_index=True)
        self.count = count

    def __call__(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros((self.count,) + values.shape[1:])
        if len(self.order):
            out[self.present] = np.add.reduceat(values[self.order], self.starts, axis=0)
        return out

    def gram(self, weights: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
        """Per index, sum of w J.T J [count, i, i] of Jacobians [N, r, i]: one matrix product per
        index (for few indices, the poses)."""
        out = np.zeros((self.count, jacobian.shape[2], jacobian.shape[2]))
        ends = np.append(self.starts[1:], len(self.order))
        for group, start, end in zip(self.present, self.starts, ends, strict=True):
            rows = self.order[start:end]
            block = jacobian[rows]
            out[group] = (block * weights[rows, None, None]).reshape(-1, block.shape[2]).T @ block.reshape(
                -1, block.shape[2])
        return out


def robust_weights(residuals: np.ndarray, sigma: float) -> np.ndarray:
    """Cauchy IRLS weights of residuals [N, 2] with scale `sigma` (radians)."""
    squared = np.einsum("ni,ni->n", residuals, residuals) / (CAUCHY_SCALE * sigma) ** 2
    return 1.0 / (1.0 + squared)


def refine_pose(rotation: np.ndarray, centre: np.ndarray, points: np.ndarray, bearings: np.ndarray,
                sigma: float, iterations: int = 10, fix_centre: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Robust resection: the pose (R, c) seeing world `points` [N, 3] along `bearings` [N, 3].

    Gauss-Newton with Cauchy weights (scale `sigma` rad) from the given pose; `fix_centre`
    refines the rotation only.
    """
    rotation, centre = np.array(rotation, dtype=np.float64), np.array(centre, dtype=np.float64)
    bases = tangent_bases(bearings)
    count = len(points)
    for _ in range(iterations):
        rotations = np.broadcast_to(rotation, (count, 3, 3))
        residuals, v = angular_residuals(rotations, np.broadcast_to(centre, (count, 3)), points, bearings, bases)
        jacobian, _ = _jacobians(rotations, v, bases, residuals)
        if fix_centre:
            jacobian = jacobian[:, :, :3]
        weights = robust_weights(residuals, sigma)
        rows = jacobian.reshape(-1, jacobian.shape[2])
        normal = (rows * np.repeat(weights, 2)[:, None]).T @ rows
        gradient = _weighted_rows(weights, jacobian, residuals).sum(0)
        normal += 1e-9 * np.trace(normal) * np.eye(len(normal))
        step = -np.linalg.solve(normal, gradient)
        rotation = rotation @ rotation_matrix(step[:3])
        if not fix_centre:
            centre = centre + step[3:]
        if np.abs(step).max() < 1e-10:
            break
    return rotation, centre


@dataclass
class BundleProblem:
    """A window of poses and the points they see; observations index both.

    `rotations` [K, 3, 3], `centres` [K, 3]; poses with `fixed` True are held. `points`
    [P, 3]. Observation n: pose `pose_index[n]`, point `point_index[n]`, unit `bearings[n]`.
    """

    rotations: np.ndarray
    centres: np.ndarray
    fixed: np.ndarray
    points: np.ndarray
    pose_index: np.ndarray
    point_index: np.ndarray
    bearings: np.ndarray

    def residuals(self) -> tuple[np.ndarray, np.ndarray]:
        bases = tangent_bases(self.bearings)
        return angular_residuals(self.rotations[self.pose_index], self.centres[self.pose_index],
                                 self.points[self.point_index], self.bearings, bases)


def _bundle_normal_equations(problem: BundleProblem, bases, sigma: float, pose_sums: _RowSums,
                              point_sums: _RowSums):
    """Blocks of the weighted normal equations: U [K,6,6], V [P,3,3], W as one matrix [6K, 3P]
    (pose parameters by point coordinates), gradients, cost."""
    rotations = problem.rotations[problem.pose_index]
    residuals, v = angular_residuals(rotations, problem.centres[problem.pose_index],
                                     problem.points[problem.point_index], problem.bearings, bases)
    d_pose, d_point = _jacobians(rotations, v, bases, residuals)
    weights = robust_weights(residuals, sigma)
    free = ~problem.fixed[problem.pose_index]
    poses, points = len(problem.rotations), len(problem.points)
    pose_weights = np.where(free, weights, 0.0)
    u = pose_sums.gram(pose_weights, d_pose)
    g_pose = pose_sums(_weighted_rows(pose_weights, d_pose, residuals))
    v_blocks = point_sums(_outer_sums(weights, d_point, d_point))
    g_point = point_sums(_weighted_rows(weights, d_point, residuals))
    w_matrix = np.zeros((poses, 6, points, 3))
    w_matrix[problem.pose_index[free], :, problem.point_index[free], :] = _outer_sums(
        weights[free], d_pose[free], d_point[free])
    w_matrix = w_matrix.reshape(6 * poses, 3 * points)
    cost = float(np.sum(np.log1p(np.einsum("ni,ni->n", residuals, residuals) / (CAUCHY_SCALE * sigma) ** 2)))
    return u, v_blocks, w_matrix, g_pose, g_point, cost


def _robust_cost(problem: BundleProblem, bases, sigma: float) -> float:
    residuals, _ = angular_residuals(problem.rotations[problem.pose_index], problem.centres[problem.pose_index],
                                     problem.points[problem.point_index], problem.bearings, bases)
    return float(np.sum(np.log1p(np.einsum("ni,ni->n", residuals, residuals) / (CAUCHY_SCALE * sigma) ** 2)))


def _bundle_step(u, v_blocks, w_matrix, g_pose, g_point, damping: float):
    """The damped Gauss-Newton step (pose steps [K, 6], point steps [P, 3]) via the Schur complement."""
    poses = u.shape[0]
    eye3, eye6 = np.eye(3)[None], np.eye(6)[None]
    v_damped = v_blocks + damping * (v_blocks * eye3) + 1e-12 * eye3
    v_inverse = _inverse_3x3(v_damped)
    u_damped = u + damping * (u * eye6)
    by_point = w_matrix.reshape(6 * poses, -1, 3).transpose(1, 0, 2)
    y = np.matmul(by_point, v_inverse).transpose(1, 0, 2).reshape(w_matrix.shape)  # W V^-1
    schur = np.zeros((poses, 6, poses, 6))
    schur[np.arange(poses), :, np.arange(poses), :] = u_damped
    schur -= (y @ w_matrix.T).reshape(schur.shape)
    rhs = -g_pose + (y @ g_point.reshape(-1)).reshape(g_pose.shape)
    flat = schur.reshape(6 * poses, 6 * poses)
    free = np.abs(np.diag(flat)) > 0
    pose_step = np.zeros(6 * poses)
    if free.any():
        sub = flat[np.ix_(free, free)]
        pose_step[free] = np.linalg.solve(sub + 1e-12 * np.trace(sub) * np.eye(len(sub)), rhs.reshape(-1)[free])
    pose_step = pose_step.reshape(poses, 6)
    point_rhs = -g_point - (w_matrix.T @ pose_step.reshape(-1)).reshape(g_point.shape)
    return pose_step, sum(v_inverse[:, :, b] * point_rhs[:, b, None] for b in range(3))


def _inverse_3x3(m: np.ndarray) -> np.ndarray:
    """Inverses of 3x3 matrices [P, 3, 3] by their adjugates (np.linalg.inv pays LAPACK per matrix)."""
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    g, h, i = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    adjugate = np.stack([np.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
                         np.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
                         np.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1)], -2)
    determinant = a * adjugate[:, 0, 0] + b * adjugate[:, 1, 0] + c * adjugate[:, 2, 0]
    return adjugate / determinant[:, None, None]


def bundle_adjust(problem: BundleProblem, sigma: float, iterations: int = 15) -> BundleProblem:
    """Levenberg-Marquardt on poses (those not fixed) and points with Cauchy weights; returns the problem refined."""
    bases = tangent_bases(problem.bearings)
    pose_sums = _RowSums(problem.pose_index, len(problem.rotations))
    point_sums = _RowSums(problem.point_index, len(problem.points))
    damping = 1e-3
    for _ in range(iterations):
        u, v_blocks, w_matrix, g_pose, g_point, cost = _bundle_normal_equations(problem, bases, sigma, pose_sums,
                                                                                point_sums)
        improved = False
        for _ in range(6):
            pose_step, point_step = _bundle_step(u, v_blocks, w_matrix, g_pose, g_point, damping)
            trial = BundleProblem(
                problem.rotations @ rotation_matrix(pose_step[:, :3]), problem.centres + pose_step[:, 3:],
                problem.fixed, problem.points + point_step, problem.pose_index, problem.point_index,
                problem.bearings)
            if _robust_cost(trial, bases, sigma) < cost:
                problem, damping, improved = trial, max(damping / 3.0, 1e-6), True
                break
            damping *= 10.0
        if not improved or (np.abs(pose_step).max(initial=0.0) < 1e-9 and np.abs(point_step).max(initial=0.0) < 1e-9):
            break
    return problem
