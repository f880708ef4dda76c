"""TensorFlow's C++ start-up noise reaches no terminal from our entry points (tff_fedmm.quiet_tf)."""

import os
import subprocess
import sys

NOISE = "Unable to register cu"


def _stderr(code: str, env: dict | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(env or {})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300,
                          check=True)
    return done.stderr


def test_bare_tensorflow_import_is_noisy_so_the_filter_can_be_seen_working():
    assert NOISE in _stderr("import tensorflow")


def test_importing_tff_fedmm_first_drops_the_noise_and_keeps_other_stderr():
    err = _stderr("import tff_fedmm, sys; import tensorflow_federated; print('after import', file=sys.stderr)")
    assert NOISE not in err
    assert "after import" in err


def test_lines_written_while_tensorflow_loads_are_replayed_unless_they_are_noise():
    code = ("import os, tff_fedmm.quiet_tf as q\n"
            "with q.filtered_fd2():\n"
            "    os.write(2, b'E x.cc:1] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN\\n')\n"
            "    os.write(2, b'a real error\\n')\n")
    err = _stderr(code)
    assert NOISE not in err and "a real error" in err


def test_the_log_level_default_is_set_once_and_a_user_setting_wins():
    code = "import os, tff_fedmm; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                          check=True).stdout.strip() == "2"
    environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                          check=True).stdout.strip() == "0"
