"""lrlib.env: the environment report."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import lrlib
from lrlib import env


def test_environment_reports_the_real_versions_and_threads():
    facts = env.environment()
    assert facts["torch"] == torch.__version__
    assert facts["numpy"] == np.__version__
    assert facts["lrlib"] == lrlib.__version__
    assert facts["torch_threads"] == torch.get_num_threads()
    assert facts["cuda_available"] == torch.cuda.is_available()
    assert len(facts["cuda_devices"]) == (torch.cuda.device_count() if facts["cuda_available"] else 0)
    assert facts["logical_cpus"] == os.cpu_count()


def test_cpu_name_is_the_model_name_in_proc_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    if not names:
        pytest.skip("no 'model name' line in /proc/cpuinfo here")
    assert env.cpu_name() == names[0]
    assert env.environment()["cpu"] == names[0]


def test_report_rejects_a_file_it_cannot_write_to():
    with pytest.raises(TypeError, match="file must be a writable text stream .*got str"):
        env.report(file="report.txt")


def test_report_prints_one_aligned_line_per_fact():
    out = io.StringIO()
    facts = env.report(file=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(facts)
    assert lines[0].startswith("python ")
    assert any(line.split()[0] == "torch" and torch.__version__ in line for line in lines)
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in lines}
    assert len(starts) == 1  # the values form one column
