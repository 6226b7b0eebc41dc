//! The console's two languages: every label in Russian and English, chosen
//! by `?lang=`, then the `callhook_lang` cookie, then `Accept-Language`.

use axum::http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Ru,
    En,
}

impl Lang {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Ru => "ru",
            Self::En => "en",
        }
    }

    /// The language a request asks for.
    pub(crate) fn of(query: Option<&str>, headers: &HeaderMap) -> Self {
        let parse = |s: &str| match s.trim().get(..2) {
            Some("ru") => Some(Self::Ru),
            Some("en") => Some(Self::En),
            _ => None,
        };
        if let Some(l) = query.and_then(parse) {
            return l;
        }
        let cookie = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("callhook_lang="));
        if let Some(l) = cookie.and_then(parse) {
            return l;
        }
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').find_map(parse))
            .unwrap_or(Self::En)
    }

    /// A label.
    ///
    /// Stays whole: one table, a row per label.
    pub(crate) fn t(self, key: &str) -> &'static str {
        let (ru, en) = match key {
            "title" => ("Консоль callhook", "callhook console"),
            "login" => ("Вход", "Sign in"),
            "token" => ("Токен администратора", "Admin token"),
            "sign_in" => ("Войти", "Sign in"),
            "logout" => ("Выйти", "Sign out"),
            "wrong_token" => ("Неверный токен администратора", "Wrong admin token"),
            "scenarios" => ("Сценарии", "Scenarios"),
            "health" => ("Состояние получателей", "Endpoint health"),
            "name" => ("Название", "Name"),
            "add" => ("Добавить сценарий", "Add a scenario"),
            "numbers" => ("Номера", "Numbers"),
            "during_call" => ("Во время звонка", "During the call"),
            "after_call" => ("После звонка", "After the call"),
            "delivered_24h" => ("Доставлено за 24 ч", "Delivered, 24 h"),
            "failed_24h" => ("Ошибок за 24 ч", "Failed, 24 h"),
            "last_error" => ("Последняя ошибка", "Last error"),
            "no_scenarios" => ("Сценариев пока нет", "No scenarios yet"),
            "state" => ("Состояние", "State"),
            "since" => ("С", "Since"),
            "url" => ("Адрес", "URL"),
            "waiting" => ("Ждут отправки", "Waiting"),
            "due" => ("К отправке сейчас", "Due now"),
            "in_flight" => ("Отправляются", "In flight"),
            "limits" => ("Одновременно · в секунду", "At once · per second"),
            "pause" => ("Приостановить", "Pause"),
            "enable" => ("Включить", "Enable"),
            "off" => ("выключен", "off"),
            "healthy" => ("работает", "healthy"),
            "failing" => ("сбоит", "failing"),
            "failed" => ("не доставлена", "failed"),
            "paused" => ("приостановлен", "paused"),
            "disabled" => ("отключён", "disabled"),
            "language" => ("English", "Русский"),
            "deliveries" => ("Отправки", "Deliveries"),
            "call_id" => ("Звонок", "Call"),
            "call" => ("Звонок", "Call"),
            "kind" => ("Вид", "Kind"),
            "created" => ("Создана", "Created"),
            "attempts" => ("Попыток", "Attempts"),
            "filter" => ("Показать", "Show"),
            "older" => ("Раньше", "Older"),
            "pending" => ("ждёт", "pending"),
            "delivered" => ("доставлена", "delivered"),
            "cancelled" => ("отменена", "cancelled"),
            "operator_event" => ("событие для оператора", "operator event"),
            "next_attempt" => ("следующая попытка", "next attempt"),
            "status" => ("Ответ", "Status"),
            "response" => ("Тело ответа", "Response body"),
            "resend" => ("Отправить снова", "Send again"),
            "copy_curl" => ("Этот запрос как curl", "This request as curl"),
            "not_found" => ("Не найдено", "Not found"),
            "new_scenario" => ("Новый сценарий", "New scenario"),
            "pool" => ("Пул номеров", "Number pool"),
            "test_send" => ("Проверить отправку", "Test send"),
            "placeholders" => ("Можно подставить:", "Fields you can use:"),
            "before_recovery" => ("до восстановления в", "before it recovered at"),
            "health_legend" => (
                "Ждут отправки: ещё не доставленные (к отправке сейчас, ждут повтора по расписанию, ждут своего «во время звонка» или, пока адрес приостановлен, ждут его включения). К отправке сейчас: их время пришло, ждут места. Отправляются: запрос идёт сейчас.",
                "Waiting: not delivered yet (due now, waiting for a retry on the schedule, waiting for their call's during-call webhook, or, while the endpoint is paused, for it to be enabled). Due now: their time has come, waiting for a seat. In flight: a request is being sent now.",
            ),
            "saved" => ("Сохранено.", "Saved."),
            "recover_counts" => (
                "Считаются только неудавшиеся (failed). Ждущие отправки (pending) здесь не считаются: их отправляет сразу кнопка «Отправить сейчас» на странице состояния адресов.",
                "Only failed deliveries count here. Pending ones are not counted: \"Send now\" on the health page sends those at once.",
            ),
            "next_or_waiting" => ("Следующая попытка · ждёт", "Next attempt · waiting for"),
            "waiting_for_during" => (
                "ждёт отправки «во время звонка» этого звонка",
                "waits for this call's during-call webhook",
            ),
            "waiting_for_endpoint" => (
                "ждёт: адрес приостановлен или отключён",
                "waits: its endpoint is paused or disabled",
            ),
            "form_errors" => (
                "Не сохранено: исправьте отмеченные поля.",
                "Not saved: correct the fields marked below.",
            ),
            "custom_fields_json" => (
                "Эти поля нельзя записать строками «имя=значение» (в имени есть «=» или перенос строки, или пробелы по краям): они сохранятся как есть, изменить их можно через API.",
                "These fields cannot be written as name=value lines (a name holds '=' or a line break, or spaces at either end): they are kept as they are; change them through the API.",
            ),
            "recover" => (
                "Отправить заново всё неудавшееся",
                "Resend everything that failed",
            ),
            "scenario" => ("Сценарий", "Scenario"),
            "will_resend" => ("Будет отправлено заново", "Will be sent again"),
            "confirm" => ("Подтвердить", "Confirm"),
            "count_first" => ("Посчитать", "Count them"),
            "requeued" => ("Поставлено в очередь", "Requeued"),
            "pool_size" => ("В пуле", "In the pool"),
            "reserved_now" => ("занято сейчас", "reserved now"),
            "free_now" => ("свободно", "free"),
            "shared_today" => ("общих выдач сегодня", "shared today"),
            "number" => ("Номер", "Number"),
            "visit" => ("Визит", "Visit"),
            "until" => ("До", "Until"),
            "reserved" => ("занят", "reserved"),
            "free" => ("свободен", "free"),
            "static" => ("статический", "static"),
            "during_call_url" => (
                "Адрес для вебхука во время звонка",
                "During-call webhook URL",
            ),
            "after_call_url" => ("Адрес для вебхука после звонка", "After-call webhook URL"),
            "custom_fields" => (
                "Дополнительные поля (имя=значение, по строке; {поле} подставляется)",
                "Custom fields (name=value, one a line; {field} is filled in)",
            ),
            "numbers_field" => ("Номера пула (по строке)", "Pool numbers (one a line)"),
            "static_numbers" => (
                "Статические номера (номер;метка;источник 1;источник 2)",
                "Static numbers (number;marker;source 1;source 2)",
            ),
            "timezone" => ("Часовой пояс", "Time zone"),
            "save" => ("Сохранить", "Save"),
            "preview" => ("Что уйдёт получателю", "What the receiver gets"),
            "signing_secret" => ("Секрет подписи", "Signing secret"),
            "reveal" => ("Показать", "Reveal"),
            "rotate" => ("Сменить секрет", "Rotate the secret"),
            "delete" => ("Удалить сценарий", "Delete the scenario"),
            "confirm_delete" => (
                "Да, удалить: ожидающие отправки будут отменены",
                "Yes, delete it: its pending deliveries are cancelled",
            ),
            "any" => ("любой", "any"),
            "zone_note" => (
                "Время показано в часовом поясе сценария со смещением; без сценария — UTC. Границы периода читаются в поясе выбранного сценария, иначе в UTC.",
                "Times are shown in each scenario's time zone, with the offset (UTC where there is no scenario). The range is read in the chosen scenario's zone, else in UTC.",
            ),
            "live" => (
                "Новые отправки появляются вверху сами",
                "New deliveries appear at the top as they arrive",
            ),
            "more_new" => (
                "Новых отправок больше, чем помещается на странице: обновить",
                "More new deliveries than a page holds: reload",
            ),
            "started" => ("Начата", "Started"),
            "call_fields" => ("Поля звонка", "The call's fields"),
            "signed_request" => ("Отправленный запрос с подписью", "The signed request sent"),
            "scenario_zone" => ("по часовому поясу сценария", "on the scenario's clock"),
            "field" => ("поле", "field"),
            "max_in_flight" => (
                "Одновременно не больше (пусто: по умолчанию)",
                "At most in flight (empty: the default)",
            ),
            "max_per_second" => (
                "В секунду не больше (пусто: без ограничения)",
                "At most per second (empty: no limit)",
            ),
            "set_limits" => ("Задать", "Set"),
            "send_now" => ("Отправить сейчас", "Send now"),
            "send_now_hint" => (
                "Всё, что ждёт повторной попытки, уйдёт сейчас (вебхук после звонка — после вебхука во время звонка)",
                "Everything waiting for a retry goes now (a call's after-call webhook after its during-call one)",
            ),
            "error" => ("Ошибка", "Error"),
            _ => ("?", "?"),
        };
        match self {
            Self::Ru => ru,
            Self::En => en,
        }
    }

    /// The other language (for the switch link).
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Ru => Self::En,
            Self::En => Self::Ru,
        }
    }
}
