/// Define one async test body and run it on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
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
            }
        )*
    };
}
