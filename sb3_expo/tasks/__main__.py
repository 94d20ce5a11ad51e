"""``python -m sb3_expo.tasks DATASET_ID``: build a local dataset (:mod:`sb3_expo.tasks.cli`)."""

from sb3_expo.tasks.cli import main

if __name__ == "__main__":
    main()
