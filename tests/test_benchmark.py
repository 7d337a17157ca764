"""benchmark.py's arithmetic (the benchmark itself is a script, not a test)."""
import benchmark


def test_seconds_to_is_the_first_time_at_or_below_the_loss():
    row = {'curve': [(1.0, 9.0), (2.0, 5.0), (3.0, 4.0), (4.0, 3.0)]}
    assert benchmark.seconds_to(row, 5.0) == 2.0
    assert benchmark.seconds_to(row, 3.5) == 4.0
    assert benchmark.seconds_to(row, 1.0) is None


def test_median_speedup_ranks_never_reached_as_slowest():
    assert benchmark.median_speedup([5.43, None, 6.63, 5.41]) == (5.41 + 5.43) / 2
    assert benchmark.median_speedup([3.0, 1.0, 2.0]) == 2.0
    assert benchmark.median_speedup([None, None, 3.0, 4.0]) is None  # the middle includes a texture that never got there
    assert benchmark.median_speedup([None]) is None


def test_texture_name_keeps_results_inside_the_output_folder():
    # A path used to name files like /elsewhere/pebbles-256-default.png, beside the source.
    assert benchmark.texture_name('/data/textures/pebbles.jpg') == 'pebbles'
    assert benchmark.texture_name('texture1.jpg') == 'texture1'
