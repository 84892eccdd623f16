"""`python -m tfserving_dev`: the development server, with tensorflow_model_server's flags."""

from tfserving_dev.cli import main

main()
