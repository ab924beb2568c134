"""lrlib.env: the environment report."""

import io

import numpy as np
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
    assert isinstance(facts["cpu"], str) and facts["cpu"]
    assert facts["logical_cpus"] >= 1


def test_report_prints_one_aligned_line_per_fact():
    out = io.StringIO()
    facts = env.report(file=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(facts)
    assert lines[0].startswith("python ")
    assert any(line.split()[0] == "torch" and torch.__version__ in line for line in lines)
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in lines}
    assert len(starts) == 1  # the values form one column
