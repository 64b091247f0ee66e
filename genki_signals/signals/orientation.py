"""Orientation operators for quaternion streams such as the Genki Wave ring's ``(n, 4)`` output.

Conventions (shared by every operator here, and identical to ``scipy.spatial.transform``):

* a quaternion is ``[w, x, y, z]`` (``scalar_first=True``, the Wave's order) or ``[x, y, z, w]``
  (``scalar_first=False``, scipy's default order);
* it is the rotation taking vectors in the **sensor (body) frame to the world frame**:
  ``v_world = q * v_body * conj(q)``, i.e. ``Rotation.from_quat(q).apply(v_body)``;
* quaternions are normalised before use, so any non-zero scale is fine; an all-zero (or NaN)
  quaternion has no rotation and gives NaN output rows instead of an error, so a single bad
  packet does not stop a live stream.

Everything is vectorised numpy (no per-sample Python) and stateless.
"""

from __future__ import annotations

import numpy as np

from genki_signals.signals.base import Operator

__all__ = ["QuaternionToEuler", "GravityFromQuaternion", "Rotate"]


def _unit_wxyz(q: np.ndarray, scalar_first: bool) -> tuple[np.ndarray, ...]:
    """Components ``w, x, y, z`` (each ``(n,)``) of the normalised quaternions; NaN if zero."""
    q = np.asarray(q, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = q / np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]
    if scalar_first:
        return q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return q[:, 3], q[:, 0], q[:, 1], q[:, 2]


class QuaternionToEuler(Operator):
    """Roll, pitch and yaw ``(n, 3)`` of orientation quaternions ``(n, 4)``.

    The angles are the aerospace (Tait-Bryan) convention: the rotation is
    ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, i.e. *intrinsic* Z-Y'-X'' (yaw about the body z
    axis, then pitch about the new y, then roll about the newest x), which equals *extrinsic*
    x-y-z. Same as ``Rotation.from_quat(q, scalar_first=...).as_euler("xyz")``. With
    ``w, x, y, z`` the unit quaternion::

        roll  = atan2(2 (w x + y z), 1 - 2 (x^2 + y^2))          in (-pi, pi]
        pitch = asin(2 (w y - x z))                               in [-pi/2, pi/2]
        yaw   = atan2(2 (w z + x y), 1 - 2 (y^2 + z^2))          in (-pi, pi]

    (pitch computed as ``2 atan2(sqrt(1 + s), sqrt(1 - s)) - pi/2`` for accuracy near +-90
    degrees). At exactly +-90 degrees pitch (gimbal lock) roll and yaw are not unique; the
    formulas then return some valid split, possibly unlike scipy's. Radians unless
    ``degrees=True``.
    """

    def __init__(self, input: str, name: str | None = None, *, scalar_first: bool = True,
                 degrees: bool = False) -> None:
        super().__init__([input], name)
        self.input = input
        self.scalar_first = self.check_bool("scalar_first", scalar_first)
        self.degrees = self.check_bool("degrees", degrees)

    def _step(self, q: np.ndarray) -> np.ndarray:
        self.check_ndim(self.input, q, exact=2, trailing=(4,))
        w, x, y, z = _unit_wxyz(q, self.scalar_first)
        out = np.empty((q.shape[0], 3))
        out[:, 0] = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
        s = np.clip(2 * (w * y - x * z), -1.0, 1.0)
        out[:, 1] = 2 * np.arctan2(np.sqrt(1 + s), np.sqrt(1 - s)) - np.pi / 2
        out[:, 2] = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        return np.degrees(out, out=out) if self.degrees else out


class GravityFromQuaternion(Operator):
    """Gravity direction in the sensor frame ``(n, 3)``, from orientation quaternions ``(n, 4)``.

    Returns the world **up** axis ``+z`` expressed in the sensor frame, scaled by ``g``:
    ``R^T @ [0, 0, g]`` (``Rotation.from_quat(q).inv().apply([0, 0, g])``), which is::

        g * [2 (x z - w y),  2 (y z + w x),  w^2 - x^2 - y^2 + z^2]

    That is what an accelerometer at rest reads (it measures the reaction to gravity, pointing
    up), so ``accelerometer - GravityFromQuaternion(...)`` is the linear acceleration; the
    gravitational acceleration itself is the negative (use ``g=-9.81`` for it in m/s^2).
    """

    def __init__(self, input: str, name: str | None = None, *, scalar_first: bool = True,
                 g: float = 1.0) -> None:
        super().__init__([input], name)
        self.input = input
        self.scalar_first = self.check_bool("scalar_first", scalar_first)
        self.g = self.check_number("g", g)

    def _step(self, q: np.ndarray) -> np.ndarray:
        self.check_ndim(self.input, q, exact=2, trailing=(4,))
        w, x, y, z = _unit_wxyz(q, self.scalar_first)
        out = np.empty((q.shape[0], 3))
        out[:, 0] = 2 * (x * z - w * y)
        out[:, 1] = 2 * (y * z + w * x)
        out[:, 2] = w * w - x * x - y * y + z * z
        if self.g != 1:
            out *= self.g
        return out


class Rotate(Operator):
    """Rotate vectors ``(n, 3)`` by quaternions ``(n, 4)``, sample by sample.

    ``v' = q v conj(q)`` = ``Rotation.from_quat(q).apply(v)``: sensor-frame vectors into the
    world frame (e.g. world-frame acceleration). ``inverse=True`` applies ``conj(q)`` instead
    (world frame into the sensor frame). Computed as
    ``v' = v + 2 w (u x v) + 2 u x (u x v)`` with ``u = (x, y, z)`` of the unit quaternion.
    """

    def __init__(self, vector: str, quaternion: str, name: str | None = None, *,
                 scalar_first: bool = True, inverse: bool = False) -> None:
        super().__init__([vector, quaternion], name)
        self.vector = vector
        self.quaternion = quaternion
        self.scalar_first = self.check_bool("scalar_first", scalar_first)
        self.inverse = self.check_bool("inverse", inverse)

    def _step(self, v: np.ndarray, q: np.ndarray) -> np.ndarray:
        self.check_ndim(self.vector, v, exact=2, trailing=(3,))
        self.check_ndim(self.quaternion, q, exact=2, trailing=(4,))
        w, x, y, z = _unit_wxyz(q, self.scalar_first)
        u = np.stack([x, y, z], axis=1)
        if self.inverse:
            u = -u
        v = np.asarray(v, dtype=float)
        t = 2 * _cross(u, v)
        return v + w[:, None] * t + _cross(u, t)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of ``(n, 3)`` arrays (cheaper than ``np.cross`` on small n)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out
