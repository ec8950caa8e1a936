//! `herald templates put | list | show | delete | preview`. Names, locales
//! and parts are checked exactly as `PUT /api/templates/{name}` checks them.

use anyhow::anyhow;

use herald::app;
use herald::clock::{Clock, SystemClock};
use herald::config::Config;
use herald::domain::{TemplateDraft, TemplateParts};
use herald::store::TemplateVersion;
use herald::templates::{check, find, render};

use super::{cli_field_error, parse_json};

#[derive(clap::Subcommand)]
pub(crate) enum TemplatesCommand {
    /// Create a template or save a new version of it.
    Put {
        name: String,
        /// e.g. en, pt, pt-BR
        #[arg(long, default_value = "en")]
        locale: String,
        /// sms, whatsapp or email (default: every channel)
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        body: Option<String>,
        #[arg(long)]
        html: Option<String>,
        /// Twilio Content template SID (HX…)
        #[arg(long)]
        content_sid: Option<String>,
        /// The Content template's variables, e.g. '{"1": "{{ customer }}"}'
        #[arg(long)]
        content_variables: Option<String>,
        /// Make this locale the template's default
        #[arg(long)]
        default: bool,
    },
    /// List templates (latest version of each locale).
    List,
    /// Show one template.
    Show { name: String },
    /// Delete a template (queued messages keep their text).
    Delete { name: String },
    /// Render a template with data, without queueing anything.
    Preview {
        name: String,
        #[arg(long)]
        locale: Option<String>,
        #[arg(long, default_value = "{}")]
        data: String,
    },
}

fn print(t: &TemplateVersion) {
    say!(
        "{} v{} [{}{}] channel: {}",
        t.name,
        t.version,
        t.locale,
        if t.is_default { ", default" } else { "" },
        t.channel.as_deref().unwrap_or("any")
    );
    for (label, part) in [
        ("subject", &t.parts.subject),
        ("body", &t.parts.body),
        ("html", &t.parts.html_body),
        ("content_sid", &t.parts.content_sid),
    ] {
        if let Some(p) = part {
            say!("  {label}: {p}");
        }
    }
}

pub(super) async fn run(config: Config, cmd: TemplatesCommand) -> anyhow::Result<()> {
    match cmd {
        TemplatesCommand::Put {
            name,
            locale,
            channel,
            subject,
            body,
            html,
            content_sid,
            content_variables,
            default,
        } => {
            let parts = TemplateParts {
                subject,
                body,
                html_body: html,
                content_sid,
                content_variables: content_variables
                    .map(|v| parse_json("--content-variables", &v))
                    .transpose()?,
            };
            let draft =
                TemplateDraft::parse(&name, Some(&locale), channel.as_deref(), parts, default).map_err(|e| match e
                    .field
                {
                    "name" => anyhow!("template name {name:?}: {}", e.message),
                    _ => cli_field_error(e),
                })?;
            check(&draft.parts).map_err(cli_field_error)?;
            let store = app::open_store(&config).await?;
            print(&store.put_template(&draft, SystemClock.now()).await?);
        }
        TemplatesCommand::List => {
            let store = app::open_store(&config).await?;
            let all = store.templates(None).await?;
            if all.is_empty() {
                say!("no templates");
            }
            for t in all {
                print(&t);
            }
        }
        TemplatesCommand::Show { name } => {
            let store = app::open_store(&config).await?;
            let all = store.templates(Some(&name)).await?;
            if all.is_empty() {
                return Err(anyhow!("no template named {name:?}"));
            }
            for t in all {
                print(&t);
            }
        }
        TemplatesCommand::Delete { name } => {
            let store = app::open_store(&config).await?;
            if !store.delete_template(&name).await? {
                return Err(anyhow!("no template named {name:?}"));
            }
            say!("template {name} deleted");
        }
        TemplatesCommand::Preview { name, locale, data } => {
            let data: serde_json::Value = parse_json("--data", &data)?;
            let store = app::open_store(&config).await?;
            let t = find(&store, &name, locale.as_deref())
                .await?
                .ok_or_else(|| anyhow!("no template named {name:?}"))?;
            let r = render(&t.parts, &data).map_err(|e| match e {
                herald::templates::RenderError::Invalid(v) => cli_field_error(v),
                herald::templates::RenderError::Limit(text) => anyhow!("{text}"),
            })?;
            say!("{} v{} [{}]", t.name, t.version, t.locale);
            for (label, part) in [
                ("subject", r.subject),
                ("body", r.body),
                ("html", r.html_body),
                ("content_sid", r.content_sid),
            ] {
                if let Some(p) = part {
                    say!("{label}: {p}");
                }
            }
            if let Some(v) = r.content_variables {
                say!("content_variables: {v}");
            }
        }
    }
    Ok(())
}
