"""hardflow: build, prove, audit and run minimal hardened Apache Airflow images."""

__version__ = "0.1.0"
