from setuptools import find_packages, setup

setup(
    name="fairseq-wae",
    version="0.1.0",
    description="Wasserstein, variational and deterministic LSTM sentence autoencoders as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["fairseq_wae", "fairseq_wae.*"]),
    # the model yamls fairseq-hydra-train selects an architecture by (pkg://fairseq_wae.config)
    package_data={"fairseq_wae.config": ["model/*.yaml"],
                  # the page of fairseq-wae-explore (its plotly.min.js comes from the plotly package)
                  "fairseq_wae.explore": ["static/*.html", "static/*.js", "static/*.css"]},
    install_requires=[
        # PyPI fairseq 0.12.2 does not import on Python 3.11+; fairseq-fixed is the same module, fixed
        'fairseq==0.12.2; python_version < "3.11"',
        'fairseq-fixed==0.12.3.1; python_version >= "3.11"',
        # a range the CPU wheel 2.13.0 satisfies: install torch first so no CUDA build is pulled in. From 2.6
        # torch.load is weights-only by default: fairseq's loads then run no code a checkpoint holds
        "torch>=2.6,<2.15",
        "numpy",
        "sacrebleu>=2.0",
        "sacremoses",
        "sentencepiece",
        "kenlm",
        "gensim>=4.3",
        "matplotlib",
        # fairseq writes --tensorboard-logdir through torch.utils.tensorboard, which needs it
        "tensorboard>=2.10",
    ],
    # pytest-xdist runs the tests on every core (pytest.ini: -n auto), sharing the trained fixtures;
    # pytest-randomly runs them in another order each time (its seed printed first and last), so that a
    # test leaning on what an earlier one left behind fails in CI rather than when the order changes
    # fairseq-wae-explore: FastAPI and uvicorn serve the page, plotly draws the map offline (its bundled
    # plotly.min.js); the tests drive the page in the distribution's Chromium through Selenium. The
    # host, origin, content-type and body-size checks are the plugin's own (explore/guard.py), not
    # FastAPI's; tests/test_explore.py passed on FastAPI 0.142.2 (the floor) and 0.165.0
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3", "pytest-randomly>=3.12", "selenium>=4.10"],
                    "explore": ["fastapi>=0.142", "uvicorn>=0.23", "plotly>=5"],
                    # fairseq-wae-fit-prior: scikit-learn fits the Gaussian mixtures, zuko the normalizing flows;
                    # a prior file is tensors only, so sampling from it needs neither (a flow's needs zuko)
                    "prior": ["scikit-learn>=1.3", "zuko>=1.1"]},
    entry_points={"console_scripts": [
        "fairseq-wae-prepare = fairseq_wae.cli.prepare_corpus:main",
        "fairseq-wae-prepare-snli = fairseq_wae.cli.prepare_snli:main",
        "fairseq-wae-evaluate = fairseq_wae.cli.evaluate:main",
        "fairseq-wae-interpolate = fairseq_wae.cli.interpolate:main",
        "fairseq-wae-export = fairseq_wae.cli.export:main",
        "fairseq-wae-bind-dictionary = fairseq_wae.cli.bind_dictionary:main",
        "fairseq-wae-verify = fairseq_wae.cli.verify:main",
        "fairseq-wae-explore = fairseq_wae.cli.explore:main",
        "fairseq-wae-fit-prior = fairseq_wae.cli.fit_prior:main",
    ]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
