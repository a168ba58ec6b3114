"""FAB's web configuration in hardflow images (the ``webserver_config.py`` Airflow reads).

The image points ``[fab] config_file`` (Airflow 3) or ``[webserver] config_file`` (Airflow 2)
here, outside ``$AIRFLOW_HOME``: Airflow 2 copies its default file into the configured path
when none is there, which would be a write into the image on a read-only root, and a file in
``$AIRFLOW_HOME`` would shadow what a volume mounted there holds.

The settings are FAB's defaults as Airflow ships them: users and passwords in the metadata
database, CSRF protection on forms with tokens valid for the session. To log in through LDAP,
OAuth or OpenID Connect, mount your own file and point the same option
(``AIRFLOW__FAB__CONFIG_FILE``, or ``AIRFLOW__WEBSERVER__CONFIG_FILE`` on Airflow 2) at it.

Flask reads this file with ``from_pyfile``, which keeps its upper-case names; it imports
nothing, so it loads the same way under every FAB release.
"""

# flask_appbuilder.const.AUTH_DB: log in with a user and password stored in the database
AUTH_TYPE = 1

WTF_CSRF_ENABLED = True
# a form's CSRF token lasts as long as the session, not a fixed hour
WTF_CSRF_TIME_LIMIT = None
