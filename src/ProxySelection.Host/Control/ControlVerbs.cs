using ProxySelection.Engine.Diagnostics;
using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace ProxySelection.Host.Control;

/// <summary><c>proxysel status</c>, <c>proxysel cache show|flush</c> and <c>proxysel reload</c>: clients of a running daemon's control socket.</summary>
internal static class ControlVerbs
{
    public static Command BuildStatus(TextWriter stderr)
    {
        var (socket, prefix, json) = (SocketOption(), PrefixOption(), JsonOption());
        var command = new Command("status", "Show a running proxy's held connections (with their subflows), decision counters and cache") { socket, prefix, json };
        command.SetAction(result => Exchange(result, ControlCommand.Status, (socket, prefix), json, stderr, FormatStatus));
        return command;
    }

    public static Command BuildCache(TextWriter stderr)
    {
        var (socket, prefix, json) = (SocketOption(), PrefixOption(), JsonOption());
        var show = new Command("show", "List the capability cache: destination, state, age and time left") { socket, prefix, json };
        show.SetAction(result => Exchange(result, ControlCommand.CacheShow, (socket, prefix), json, stderr, FormatCache));
        var (flushSocket, flushPrefix, flushJson) = (SocketOption(), PrefixOption(), JsonOption());
        var flush = new Command("flush", "Empty the capability cache (held connections are not touched)") { flushSocket, flushPrefix, flushJson };
        flush.SetAction(result => Exchange(result, ControlCommand.CacheFlush, (flushSocket, flushPrefix), flushJson, stderr,
            reply => string.Create(CultureInfo.InvariantCulture, $"cache flushed: {Number(reply, "removed")} entries removed\n")));
        return new Command("cache", "Show or flush a running proxy's capability cache") { show, flush };
    }

    /// <summary>
    /// <c>proxysel reload</c>: SIGHUP's reload through the control socket (for a daemon that cannot be signalled, or
    /// whose SIGHUP is ignored, e.g. started under nohup). Prints the reload line; exit 0 when applied,
    /// <see cref="ExitCodes.Usage"/> when refused (the configuration is invalid or changes a key fixed at start).
    /// </summary>
    public static Command BuildReload(TextWriter stderr)
    {
        var (socket, prefix, json) = (SocketOption(), PrefixOption(), JsonOption());
        var command = new Command("reload", "Reload a running proxy's configuration (as SIGHUP does): policy, priority, probe and drain timeouts, operator keys") { socket, prefix, json };
        command.SetAction(result =>
        {
            int code = Exchange(result, ControlCommand.Reload, (socket, prefix), json, stderr, reply => (reply["message"]?.GetValue<string>() ?? "") + "\n", out var reply);
            return code == ExitCodes.Ok && reply?["applied"]?.GetValue<bool>() != true ? ExitCodes.Usage : code;
        });
        return command;
    }

    private static Option<string> SocketOption() => new("--socket")
    {
        Description = "The daemon's control socket (Proxy:ControlSocket; default /run/proxysel/<chain-prefix>-net<inode>.sock, this network namespace's)",
    };

    /// <summary>Names the default socket, with this network namespace's identity.</summary>
    private static Option<string> PrefixOption() => new("--chain-prefix")
    {
        Description = "The daemon's Proxy:ChainPrefix, for the default control socket",
        DefaultValueFactory = _ => "PSEL",
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print the daemon's JSON reply as it came" };

    private static int Exchange(ParseResult result, ControlCommand command, (Option<string> Path, Option<string> Prefix) socket, Option<bool> json, TextWriter stderr,
        Func<JsonObject, string> format) =>
        Exchange(result, command, socket, json, stderr, format, out _);

    private static int Exchange(ParseResult result, ControlCommand command, (Option<string> Path, Option<string> Prefix) socket, Option<bool> json, TextWriter stderr,
        Func<JsonObject, string> format, out JsonObject? reply)
    {
        reply = null;
        var path = result.GetValue(socket.Path) ?? ControlSocketPaths.Default(result.GetValue(socket.Prefix)!);
        var exchange = ControlClient.SendAsync(path, command, ControlClient.DefaultTimeout).GetAwaiter().GetResult();
        if (!exchange.Ok)
        {
            stderr.WriteLine("proxysel: " + exchange.Error);
            return ExitCodes.FileNotReadable;
        }

        reply = exchange.Reply;
        var output = result.InvocationConfiguration.Output;
        output.Write(result.GetValue(json) ? exchange.Line + "\n" : format(exchange.Reply));
        return ExitCodes.Ok;
    }

    /// <summary>The status reply as tables: the daemon, one row per held connection with its subflows beneath, counters, cache.</summary>
    public static string FormatStatus(JsonObject reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        var text = new StringBuilder();
        var daemon = reply["daemon"] as JsonObject ?? [];
        text.Append(CultureInfo.InvariantCulture,
            $"proxysel {Text(daemon, "state")}: role={Text(daemon, "role")} mode={Text(daemon, "mode")} policy={Text(daemon, "policy")} id={Number(daemon, "proxy_id")} priority={Number(daemon, "priority")}{(daemon["instance_id"] is null ? "" : $" instance={Text(daemon, "instance_id")}")} up {Seconds(daemon, "uptime_seconds")}\n");
        var connections = reply["connections"] as JsonArray ?? [];
        text.Append(CultureInfo.InvariantCulture, $"held connections: {connections.Count}\n");
        if (connections.Count > 0)
        {
            var rows = new List<string[]> { new[] { "CLIENT", "SERVER", "REASON", "AGE", "UP", "DOWN", "MPTCP", "SUBFLOWS" } };
            var subflows = new List<List<string>>();
            foreach (var connection in connections.OfType<JsonObject>())
            {
                rows.Add([Text(connection, "client"), Text(connection, "server"), Text(connection, "reason"), Seconds(connection, "age_seconds"),
                    Number(connection, "bytes_up"), Number(connection, "bytes_down"), $"{Text(connection, "mptcp_leg")}:{Text(connection, "mptcp_status")}",
                    Number(connection, "subflow_count")]);
                subflows.Add([.. (connection["subflows"] as JsonArray ?? []).OfType<JsonObject>()
                    .Select(s => $"    subflow {Text(s, "local")} <-> {Text(s, "remote")} {Text(s, "state")} rtt={Number(s, "rtt_us")}us")]);
            }

            var table = Table(rows);
            text.Append(table[0]);
            for (int i = 1; i < table.Count; i++)
            {
                text.Append(table[i]);
                foreach (var line in subflows[i - 1])
                {
                    text.Append(line).Append('\n');
                }
            }
        }

        var decisions = reply["decisions"] as JsonObject ?? [];
        text.Append("decisions: ").AppendJoin(' ', decisions.Select(d => $"{d.Key}={d.Value}")).Append('\n');
        var cache = reply["cache"] as JsonObject ?? [];
        text.Append(CacheLine(cache));
        return text.ToString();
    }

    public static string FormatCache(JsonObject reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        var text = new StringBuilder();
        var entries = (reply["entries"] as JsonArray ?? []).OfType<JsonObject>().ToList();
        if (entries.Count == 0)
        {
            text.Append("cache is empty\n");
        }
        else
        {
            var rows = new List<string[]> { new[] { "DESTINATION", "STATE", "PROXY", "CHECKED", "AGE", "TTL LEFT" } };
            rows.AddRange(entries.Select(e => new[] { Text(e, "destination"), Text(e, "state"), Text(e, "proxy_id"), Text(e, "checked"), Seconds(e, "age_seconds"), Seconds(e, "ttl_seconds") }));
            foreach (var line in Table(rows))
            {
                text.Append(line);
            }
        }

        text.Append(CacheLine(reply["summary"] as JsonObject ?? []));
        return text.ToString();
    }

    private static string CacheLine(JsonObject cache) => string.Create(CultureInfo.InvariantCulture,
        $"cache: {Number(cache, "entries")} of {Number(cache, "capacity")} entries, hits={Number(cache, "hits")} misses={Number(cache, "misses")} hit_ratio={Text(cache, "hit_ratio")} evictions={Number(cache, "evictions")} expirations={Number(cache, "expirations")} facts_rechecked={Number(cache, "facts_rechecked")} facts_changed={Number(cache, "facts_changed")}\n");

    private static List<string> Table(List<string[]> rows)
    {
        var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        return [.. rows.Select(r => string.Join("  ", r.Select((cell, c) => c == r.Length - 1 ? cell : cell.PadRight(widths[c]))).TrimEnd() + "\n")];
    }

    private static string Text(JsonObject node, string name) => node[name] switch
    {
        null => "-",
        JsonValue value when value.TryGetValue(out string? s) => s,
        var other => other.ToJsonString(),
    };

    private static string Number(JsonObject node, string name) => Text(node, name);

    private static string Seconds(JsonObject node, string name) =>
        node[name] is JsonValue value && value.TryGetValue(out double seconds)
            ? seconds switch
            {
                < 60 => seconds.ToString("0.0", CultureInfo.InvariantCulture) + "s",
                < 3600 => (seconds / 60).ToString("0.0", CultureInfo.InvariantCulture) + "m",
                _ => (seconds / 3600).ToString("0.0", CultureInfo.InvariantCulture) + "h",
            }
            : "-";
}
