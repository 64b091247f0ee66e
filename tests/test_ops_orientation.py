"""Orientation operators against scipy.spatial.transform.Rotation as the reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.testing.streaming import assert_streams_like_batch

N = 150


def random_quaternions(seed: int = 0, n: int = N) -> np.ndarray:
    """Scalar-first, deliberately not unit length, away from gimbal lock (|pitch| < 85 deg)."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(4 * n, 4))
    pitch = Rotation.from_quat(q, scalar_first=True).as_euler("xyz")[:, 1]
    q = q[np.abs(pitch) < np.radians(85)][:n]
    return q * rng.uniform(0.2, 3.0, size=(n, 1))


def with_zero_row(q: np.ndarray, expected: np.ndarray, row: int = 7):
    """Insert an all-zero quaternion at ``row``; its expected output is NaN."""
    q = np.insert(q, row, 0.0, axis=0)
    expected = np.insert(expected, row, np.nan, axis=0)
    return q, expected


@pytest.mark.parametrize("scalar_first", [True, False])
@pytest.mark.parametrize("degrees", [False, True])
def test_quaternion_to_euler(scalar_first, degrees):
    q = random_quaternions(1)
    ref = Rotation.from_quat(q, scalar_first=True).as_euler("xyz", degrees=degrees)
    q_in = q if scalar_first else q[:, [1, 2, 3, 0]]
    q_in, ref = with_zero_row(q_in, ref)
    assert_streams_like_batch(
        lambda: s.QuaternionToEuler("q", scalar_first=scalar_first, degrees=degrees),
        [q_in], ref, atol=1e-9)


def test_euler_known_angles_and_sign_invariance():
    roll, pitch, yaw = 0.3, -0.7, 2.5
    # Intrinsic Z-Y'-X'': R = Rz(yaw) Ry(pitch) Rx(roll).
    q = Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_quat(scalar_first=True)
    op = s.QuaternionToEuler("q")
    np.testing.assert_allclose(op(np.array([q, -q])), [[roll, pitch, yaw]] * 2, atol=1e-12)


@pytest.mark.parametrize("scalar_first", [True, False])
@pytest.mark.parametrize("g", [1.0, -9.81])
def test_gravity_from_quaternion(scalar_first, g):
    q = random_quaternions(2)
    ref = Rotation.from_quat(q, scalar_first=True).inv().apply([0, 0, g])
    q_in = q if scalar_first else q[:, [1, 2, 3, 0]]
    q_in, ref = with_zero_row(q_in, ref)
    assert_streams_like_batch(
        lambda: s.GravityFromQuaternion("q", scalar_first=scalar_first, g=g), [q_in], ref)


def test_gravity_at_rest_is_up():
    op = s.GravityFromQuaternion("q", g=9.81)
    np.testing.assert_allclose(op(np.array([[1.0, 0, 0, 0]])), [[0, 0, 9.81]])
    # Sensor rolled 90 degrees about x: world up lies along the sensor's +y axis.
    q = Rotation.from_euler("x", 90, degrees=True).as_quat(scalar_first=True)
    np.testing.assert_allclose(op(q[None]), [[0, 9.81, 0]], atol=1e-12)


@pytest.mark.parametrize("scalar_first", [True, False])
@pytest.mark.parametrize("inverse", [False, True])
def test_rotate(scalar_first, inverse):
    q = random_quaternions(3)
    v = np.random.default_rng(4).normal(size=(N, 3)) * 5
    rot = Rotation.from_quat(q, scalar_first=True)
    ref = (rot.inv() if inverse else rot).apply(v)
    q_in = q if scalar_first else q[:, [1, 2, 3, 0]]
    q_in, ref = with_zero_row(q_in, ref)
    v_in = np.insert(v, 7, [1.0, 2.0, 3.0], axis=0)
    assert_streams_like_batch(
        lambda: s.Rotate("acc", "quat", scalar_first=scalar_first, inverse=inverse),
        [v_in, q_in], ref)


def test_zero_quaternion_gives_nan_without_warnings():
    zeros = np.zeros((2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(s.QuaternionToEuler("q")(zeros)).all()
        assert np.isnan(s.GravityFromQuaternion("q")(zeros)).all()
        assert np.isnan(s.Rotate("v", "q")(np.ones((2, 3)), zeros)).all()


def test_bad_input():
    with pytest.raises(OperatorError, match=r"QuaternionToEuler 'e': input 'q' must have shape "
                                            r"\(n, 4\), got \(5, 3\)"):
        s.QuaternionToEuler("q", "e")(np.zeros((5, 3)))
    with pytest.raises(OperatorError, match=r"GravityFromQuaternion 'g': input 'q' must have "
                                            r"shape \(n, 4\), got \(5,\)"):
        s.GravityFromQuaternion("q", "g")(np.zeros(5))
    with pytest.raises(OperatorError, match=r"Rotate 'r': input 'acc' must have shape "
                                            r"\(n, 3\), got \(5, 4\)"):
        s.Rotate("acc", "quat", "r")(np.zeros((5, 4)), np.zeros((5, 4)))
    with pytest.raises(OperatorError, match=r"Rotate 'r': input 'quat' must have shape "
                                            r"\(n, 4\), got \(5, 3\)"):
        s.Rotate("acc", "quat", "r")(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(OperatorError, match=r"field 'scalar_first' must be true or false"):
        s.QuaternionToEuler("q", scalar_first="yes")
    with pytest.raises(OperatorError, match=r"GravityFromQuaternion 'g': field 'g' must be a "
                                            r"finite number"):
        s.GravityFromQuaternion("q", "g", g=float("inf"))
