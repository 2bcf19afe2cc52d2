"""The ways out of a query sandbox an attacker tries: ``(sql, a phrase of the refusal)``. ``{home}`` is
KCURE_HOME and ``{secrets}`` the secrets file; every one must be refused with one line naming the rule,
over a release (tests/security/test_query_sandbox.py) and in a project's workspace
(tests/projects/test_exports.py)."""

ATTACKS = [
    ("select * from read_parquet('{home}/staging/kccr_registry/**/*.parquet') limit 3", "Permission Error"),
    ("select * from read_parquet('{home}/pseudonymized/b1/hira_t200/**/*.parquet')", "Permission Error"),
    ("select * from read_csv('/etc/passwd')", "Permission Error"),
    ("select * from read_text('{secrets}')", "Permission Error"),
    ("select * from read_blob('{home}/landing/_truth/persons.parquet')", "Permission Error"),
    ("select * from glob('{home}/**')", "Permission Error"),
    ("select * from read_parquet('{home}/protected/b1/RGST/*.parquet')", "Permission Error"),
    ("copy RGST to '{home}/out.csv'", "not COPY"),
    ("attach '{home}/x.db' as x", "not ATTACH"),
    ("install httpfs", "not LOAD"),
    ("load httpfs", "not LOAD"),
    ("set enable_external_access = true", "not SET"),
    ("reset lock_configuration", "not"),
    ("pragma database_list", "not PRAGMA"),
    ("drop view RGST", "not DROP"),
    ("create table x as select * from RGST", "not CREATE"),
    ("select 1; select 2", "one statement per query"),
    ("select * from query('drop view RGST')", "refused"),
    ("select getenv('KCURE_LIBRARY_SECRET')", "getenv"),
    ("call pragma_version()", "not CALL"),
    ("export database '{home}/dump'", "not EXPORT"),
    ("select count(*) from range(100000000000) a, range(100000000000) b", "ran longer than 3 s"),
    ("", "the query is empty"),
    ("   ;  ", "refused"),
    ("selec * from RGST", "not valid SQL"),
]
