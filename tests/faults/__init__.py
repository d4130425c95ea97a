"""The fault-injection suite: training runs killed at named points and at random times, torn
files, a full disk, concurrent trainers, stale folders, changed data, fuzzed input and
malicious pickles; every surviving run must equal one uninterrupted reference run."""
