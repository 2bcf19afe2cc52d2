# K-CURE library pipeline: Airflow 3 with Spark 4 (Java 17) and the project installed from the lock.
#   docker build -t kcure-library .
#   docker run --rm -p 8080:8080 -e KCURE_LINKAGE_SECRET -e KCURE_LIBRARY_SECRET kcure-library standalone
# The base image's Airflow version must equal the one in uv.lock (tests/test_dockerfile.py checks it).
FROM apache/airflow:3.3.2-python3.11

USER 0
# Spark 4 needs a Java 17+ runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless=17.* \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o 50000 -g 0 -m 0755 /opt/kcure /opt/kcure/jvm
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    KCURE_CONF=/opt/kcure/conf \
    KCURE_JOBS_DIR=/opt/kcure/jobs \
    KCURE_EXPECTATIONS=/opt/kcure/expectations \
    KCURE_HOME=/opt/airflow/kcure \
    KCURE_CLASS_ARCHIVE_DIR=/opt/kcure/jvm \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/kcure/dags

# The image's non-root airflow user (uid 50000) installs the locked runtime set (hash-checked), then the project without deps.
USER 50000
WORKDIR /opt/kcure
COPY --chown=50000:0 requirements.lock /opt/kcure/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /opt/kcure/requirements.lock
COPY --chown=50000:0 pyproject.toml README.md /opt/kcure/
COPY --chown=50000:0 src /opt/kcure/src
RUN pip install --no-cache-dir --no-deps /opt/kcure \
    && python -m kcure.cli spark-archive
COPY --chown=50000:0 conf /opt/kcure/conf
COPY --chown=50000:0 dags /opt/kcure/dags
COPY --chown=50000:0 jobs /opt/kcure/jobs
COPY --chown=50000:0 expectations /opt/kcure/expectations
