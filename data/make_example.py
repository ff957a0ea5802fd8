"""Regenerate the bundled example recording and its ground truth (deterministic).

A sparse excitatory/inhibitory network of 10 recorded and 2 hidden neurons (spikeglm.synthetic,
protocol "sparse-ei", seed 7), simulated in 5 ms bins for 80 trials of 1 s, written as

  example.nwb          the recorded units' spike times, with a trials table (NWB 2.x)
  example.nix          the same through neo's NixIO, as one continuous Segment
  example_truth.json   the true connectivity of all 12 neurons (spikeglm.Connectivity)
  example_hidden.npz   the hidden neurons' spike times, to compare with what a fit infers

Run from the project root: python data/make_example.py
"""

from pathlib import Path

import spikeglm as sg

HERE = Path(__file__).parent
SETTINGS = dict(n_visible=10, n_hidden=2, n_bins=200, n_train=60, n_test=20, connection_prob=0.2)


def main() -> None:
    truth, train, test, hidden_train, hidden_test = sg.synthetic.network(
        "sparse-ei", seed=7, with_hidden=True, **SETTINGS
    )
    visible = sg.SpikeCounts.concatenate([train, test])
    hidden = sg.SpikeCounts.concatenate([hidden_train, hidden_test])
    recording = visible.to_recording(seed=7)
    sg.save(recording, HERE / "example.nwb", overwrite=True)
    # NIX stores each Segment x SpikeTrain with a large overhead: one Segment of 80 s (no trials
    # table; bin it with trial_length="1 s" to get the same trials) keeps the file small.
    continuous = sg.Recording(recording.spike_times, recording.unit_ids, recording.t_start, recording.t_stop)
    sg.save(continuous, HERE / "example.nix", overwrite=True)
    sg.save(hidden.to_recording(seed=8), HERE / "example_hidden.npz", overwrite=True)
    truth.save(HERE / "example_truth.json", overwrite=True)
    print(f"{recording}; hidden {hidden}")


if __name__ == "__main__":
    main()
