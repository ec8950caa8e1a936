/// Define one async test body and run it on SQLite, PostgreSQL and MariaDB.
#[macro_export]
macro_rules! every_backend {
    ($(async fn $name:ident($db:ident: TestDb) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn body($db: $crate::support::TestDb) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    body($crate::support::TestDb::new($crate::support::Backend::Sqlite).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body($crate::support::TestDb::new($crate::support::Backend::Postgres).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb() {
                    body($crate::support::TestDb::new($crate::support::Backend::Mariadb).await).await
                }
            }
        )*
    };
}

/// Like [`every_backend!`], for what only a database server can do (several
/// processes on one database, connections the server ends): each test body
/// runs on PostgreSQL and on MariaDB.
macro_rules! server_backends {
    ($(async fn $name:ident($db:ident: TestDb) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn body($db: $crate::support::TestDb) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body($crate::support::TestDb::new($crate::support::Backend::Postgres).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb() {
                    body($crate::support::TestDb::new($crate::support::Backend::Mariadb).await).await
                }
            }
        )*
    };
}
