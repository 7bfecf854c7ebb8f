using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using ProxySelection.Host.Hosting;
using ProxySelection.Host.Telemetry;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host;

/// <summary>
/// <c>proxysel run</c>: one proxy in the current network namespace until SIGINT or SIGTERM (after a drain of
/// Proxy:DrainTimeout), then its rules are removed; SIGHUP reloads the policy. Settings come from
/// <see cref="ProxyConfiguration"/>; the host is <see cref="ProxyDaemon"/>. Prints one line per decision and, at the
/// end, the counters.
/// </summary>
internal static class RunCommand
{
    public static Command Build(TextWriter stderr)
    {
        var role = new Option<string>("--role") { Description = "downgrade (MPTCP client, TCP server) or upgrade", DefaultValueFactory = _ => "downgrade" };
        role.AcceptOnlyFromAmong("downgrade", "upgrade");
        var mode = new Option<string>("--mode") { Description = "explicit (MP_PROXY signals), implicit (none), or socks (host-configured: a SOCKS5 server, no interception)", DefaultValueFactory = _ => "explicit" };
        mode.AcceptOnlyFromAmong("explicit", "implicit", "socks");
        var policy = new Option<string>("--policy") { Description = "first, nearest-server or priority", DefaultValueFactory = _ => "first" };
        policy.AcceptOnlyFromAmong("first", "nearest-server", "priority");
        var proxyId = new Option<byte>("--proxy-id") { Description = "This proxy's id in MP_PROXY (1..255)", DefaultValueFactory = _ => 1 };
        var priority = new Option<byte>("--priority") { Description = "Priority 0..15 for the priority policy", DefaultValueFactory = _ => 8 };
        var keyFile = new Option<FileInfo?>("--key-file") { Description = "Operator key for MP_PROXY tags: hex text or raw bytes, at least 16 bytes (default: a random key, this proxy alone)" };
        var ports = new Option<string>("--ports") { Description = "Destination ports to intercept, comma-separated", DefaultValueFactory = _ => "80,443" };
        var queue = new Option<ushort>("--queue") { Description = "NFQUEUE number", DefaultValueFactory = _ => 0 };
        var capacity = new Option<int>("--capacity") { Description = "Connections held at most; at the limit the proxy defers", DefaultValueFactory = _ => 10_000 };
        var prefix = new Option<string>("--chain-prefix") { Description = "Prefix of the iptables chains (cleanup must use the same)", DefaultValueFactory = _ => "PSEL" };
        var socks = new Option<string>("--socks") { Description = "SOCKS5 listen address:port (default 0.0.0.0:1080 with --mode socks; in a transparent mode, serves SOCKS clients in addition)" };
        var socksUsers = new Option<FileInfo?>("--socks-users") { Description = "RFC 1929 users for the SOCKS server: a file of name:password lines (default: NO AUTH)" };
        var events = new Option<string>("--events") { Description = "Append the proxy's decisions to this file as JSON lines (Proxy:EventsFile)" };
        var convert = new Option<string>("--convert") { Description = "0-RTT TCP Convert (RFC 8803) listen address:port, with TCP Fast Open (default: none)" };
        var command = new Command("run", "Run a proxy in this network namespace until SIGINT/SIGTERM; its rules are removed on the way out")
        {
            role, mode, policy, proxyId, priority, keyFile, ports, queue, capacity, prefix, socks, socksUsers, convert, events,
        };
        var config = new Option<FileInfo?>("--config") { Description = "JSON configuration file (section Proxy; see samples/). Flags given on the command line override it" };
        var set = new Option<string[]>("--set") { Description = "Override one configuration key, e.g. --set Proxy:DrainTimeout=5s (repeatable)" };
        var check = new Option<bool>("--check") { Description = "Check the configuration and exit: 0 when valid, 2 with every bad key named when not" };
        var debug = new Option<bool>("--debug") { Description = "Print the stack trace of a start failure after its one line (Proxy:Debug)" };
        command.Options.Add(config);
        command.Options.Add(set);
        command.Options.Add(check);
        command.Options.Add(debug);
        command.SetAction(result =>
        {
            // Precedence: file < PROXYSEL_* environment < --set < the flags below, when given explicitly.
            var overrides = new List<string>(result.GetValue(set) ?? []);
            void Flag<T>(Option<T> option, string key, Func<T, string> text)
            {
                if (result.GetResult(option) is { Implicit: false })
                {
                    overrides.Add(ProxyConfiguration.Key(key) + "=" + text(result.GetValue(option)!));
                }
            }

            Flag(role, nameof(ProxyHostOptions.Role), v => v);
            Flag(mode, nameof(ProxyHostOptions.Mode), v => v);
            Flag(policy, nameof(ProxyHostOptions.Policy), v => v);
            Flag(proxyId, nameof(ProxyHostOptions.ProxyId), v => v.ToString(CultureInfo.InvariantCulture));
            Flag(priority, nameof(ProxyHostOptions.Priority), v => v.ToString(CultureInfo.InvariantCulture));
            Flag(keyFile, nameof(ProxyHostOptions.KeyFile), v => v!.FullName);
            Flag(ports, nameof(ProxyHostOptions.Ports), v => v);
            Flag(queue, nameof(ProxyHostOptions.QueueNumber), v => v.ToString(CultureInfo.InvariantCulture));
            Flag(capacity, nameof(ProxyHostOptions.Capacity), v => v.ToString(CultureInfo.InvariantCulture));
            Flag(prefix, nameof(ProxyHostOptions.ChainPrefix), v => v);
            Flag(socks, nameof(ProxyHostOptions.Socks), v => v);
            Flag(socksUsers, nameof(ProxyHostOptions.SocksUsersFile), v => v!.FullName);
            Flag(convert, nameof(ProxyHostOptions.Convert), v => v);
            Flag(events, nameof(ProxyHostOptions.EventsFile), v => v.Length == 0 || v.Contains('\0', StringComparison.Ordinal) ? v : Path.GetFullPath(v));
            if (result.GetValue(debug))
            {
                overrides.Add(ProxyConfiguration.Key(nameof(ProxyHostOptions.Debug)) + "=true");
            }

            // Without a file the command line stops at once, as it always did (the lab stops proxies with a 3 s grace).
            var configFile = result.GetValue(config)?.FullName;
            KeyValuePair<string, string?>[] defaults = configFile is null ? [new(ProxyConfiguration.Key(nameof(ProxyHostOptions.DrainTimeout)), "0s")] : [];
            var loaded = ProxyConfiguration.Load(configFile, overrides, defaults: defaults);
            if (!loaded.IsValid)
            {
                foreach (var error in loaded.Errors)
                {
                    stderr.WriteLine("proxysel: configuration: " + error);
                }

                stderr.WriteLine("proxysel: refusing to start with an invalid configuration");
                return ExitCodes.Usage;
            }

            if (result.GetValue(check))
            {
                stderr.WriteLine("proxysel: configuration is valid");
                return ExitCodes.Ok;
            }

            // Exporters first, so the engine's source and meter have listeners from its first SYN; stopped after the host.
            IDisposable telemetry;
            try
            {
                telemetry = ProxyTelemetryExporters.StartExporters(loaded.Telemetry, InstanceMode.IdFor(loaded.Options!.Instance));
            }
            catch (TelemetryException e)
            {
                stderr.WriteLine("proxysel: " + e.Message);
                return ExitCodes.Usage;
            }

            using var exporters = telemetry;
            return ProxyDaemon.Run(loaded, () => ProxyConfiguration.Load(configFile, overrides, defaults: defaults), stderr);
        });
        return command;
    }

    public static bool TryParsePorts(string text, out IReadOnlyList<ushort> ports)
    {
        var list = new List<ushort>();
        ports = list;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!ushort.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port == 0)
            {
                return false;
            }

            list.Add(port);
        }

        return list.Count > 0;
    }

    /// <summary>Hex text (whitespace ignored) or, failing that, the file's raw bytes; a random key when no file is given.</summary>
    public static bool TryLoadKey(FileInfo? file, TextWriter stderr, out byte[] key)
    {
        if (file is null)
        {
            key = RandomNumberGenerator.GetBytes(32);
            return true;
        }

        try
        {
            var bytes = File.ReadAllBytes(file.FullName);
            var text = new string([.. System.Text.Encoding.ASCII.GetString(bytes).Where(c => !char.IsWhiteSpace(c))]);
            key = text.Length % 2 == 0 && text.Length > 0 && text.All(char.IsAsciiHexDigit) ? Convert.FromHexString(text) : bytes;
        }
        catch (IOException e)
        {
            stderr.WriteLine($"--key-file: {e.Message}");
            key = [];
            return false;
        }
        catch (UnauthorizedAccessException e)
        {
            stderr.WriteLine($"--key-file: {e.Message}");
            key = [];
            return false;
        }

        if (key.Length < MpProxyKeyRing.MinimumKeyLength)
        {
            stderr.WriteLine($"--key-file: the key must be at least {MpProxyKeyRing.MinimumKeyLength} bytes (was {key.Length})");
            return false;
        }

        return true;
    }
}
