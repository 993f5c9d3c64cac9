"""The PRNG: xoshiro256** seeded through splitmix64, checked against a reference written from the papers."""

from fastmock._core import Random

MASK = (1 << 64) - 1


def reference(seed, count):
    """The first ``count`` doubles of xoshiro256** seeded by splitmix64 (Vigna's reference algorithms)."""
    state = []
    for _ in range(4):
        seed = (seed + 0x9E3779B97F4A7C15) & MASK
        z = seed
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        state.append(z ^ (z >> 31))
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & MASK  # noqa: E731
    out = []
    for _ in range(count):
        s0, s1, s2, s3 = state
        result = (rotl((s1 * 5) & MASK, 7) * 9) & MASK
        t = (s1 << 17) & MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        state = [s0, s1, s2, s3]
        out.append((result >> 11) / float(1 << 53))
    return out


def test_the_sequence_is_the_reference_one():
    for seed in (0, 1, 7, MASK):
        rng = Random(seed)
        assert [rng.random() for _ in range(1000)] == reference(seed, 1000)


def test_the_same_seed_gives_the_same_sequence_and_others_differ():
    a, b, c = Random(42), Random(42), Random(43)
    first = [a.random() for _ in range(100)]
    assert first == [b.random() for _ in range(100)]
    assert first != [c.random() for _ in range(100)]


def test_values_lie_in_the_unit_interval_and_spread_over_it():
    rng = Random(5)
    values = [rng.random() for _ in range(100_000)]
    assert all(0.0 <= v < 1.0 for v in values)
    deciles = [0] * 10
    for v in values:
        deciles[int(v * 10)] += 1
    assert all(9_000 < n < 11_000 for n in deciles)  # ~10,000 each; 10 sigma is ~950


def test_a_seed_outside_64_bits_is_refused():
    for seed in (-1, 1 << 64):
        try:
            Random(seed)
        except OverflowError:
            continue
        raise AssertionError(f"seed {seed} was taken")

