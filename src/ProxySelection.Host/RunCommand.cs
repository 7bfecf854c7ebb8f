using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using ProxySelection.Host.Proxy;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host;

/// <summary>
/// <c>proxysel run</c>: one proxy in the current network namespace until SIGINT or SIGTERM, then its rules are
/// removed. Prints one line per decision and, at the end, the counters.
/// </summary>
internal static class RunCommand
{
    public static Command Build(TextWriter stderr)
    {
        var role = new Option<string>("--role") { Description = "downgrade (MPTCP client, TCP server) or upgrade", DefaultValueFactory = _ => "downgrade" };
        role.AcceptOnlyFromAmong("downgrade", "upgrade");
        var mode = new Option<string>("--mode") { Description = "explicit (MP_PROXY signals) or implicit (none)", DefaultValueFactory = _ => "explicit" };
        mode.AcceptOnlyFromAmong("explicit", "implicit");
        var policy = new Option<string>("--policy") { Description = "first, nearest-server or priority", DefaultValueFactory = _ => "first" };
        policy.AcceptOnlyFromAmong("first", "nearest-server", "priority");
        var proxyId = new Option<byte>("--proxy-id") { Description = "This proxy's id in MP_PROXY (1..255)", DefaultValueFactory = _ => 1 };
        var priority = new Option<byte>("--priority") { Description = "Priority 0..15 for the priority policy", DefaultValueFactory = _ => 8 };
        var keyFile = new Option<FileInfo?>("--key-file") { Description = "Operator key for MP_PROXY tags: hex text or raw bytes, at least 16 bytes (default: a random key, this proxy alone)" };
        var ports = new Option<string>("--ports") { Description = "Destination ports to intercept, comma-separated", DefaultValueFactory = _ => "80,443" };
        var queue = new Option<ushort>("--queue") { Description = "NFQUEUE number", DefaultValueFactory = _ => 0 };
        var capacity = new Option<int>("--capacity") { Description = "Connections held at most; at the limit the proxy defers", DefaultValueFactory = _ => 10_000 };
        var prefix = new Option<string>("--chain-prefix") { Description = "Prefix of the iptables chains (cleanup must use the same)", DefaultValueFactory = _ => "PSEL" };
        var command = new Command("run", "Run a proxy in this network namespace until SIGINT/SIGTERM; its rules are removed on the way out")
        {
            role, mode, policy, proxyId, priority, keyFile, ports, queue, capacity, prefix,
        };
        command.SetAction(result =>
        {
            if (!TryParsePorts(result.GetValue(ports)!, out var portList))
            {
                stderr.WriteLine("--ports must be a comma-separated list of ports 1..65535");
                return ExitCodes.Usage;
            }

            if (!TryLoadKey(result.GetValue(keyFile), stderr, out var key))
            {
                return ExitCodes.Usage;
            }

            var negotiation = new NegotiatorOptions
            {
                Role = result.GetValue(role) == "upgrade" ? ProxyRole.Upgrade : ProxyRole.Downgrade,
                Mode = result.GetValue(mode) == "implicit" ? SignalingMode.Implicit : SignalingMode.Explicit,
                Policy = result.GetValue(policy) switch
                {
                    "nearest-server" => SelectionPolicy.NearestServer,
                    "priority" => SelectionPolicy.Priority,
                    _ => SelectionPolicy.First,
                },
                ProxyId = result.GetValue(proxyId),
                Priority = result.GetValue(priority),
                MaxConnections = result.GetValue(capacity),
            };
            var options = new ProxyEngineOptions
            {
                Negotiation = negotiation,
                Ports = portList,
                QueueNumber = result.GetValue(queue),
                ChainPrefix = result.GetValue(prefix)!,
                KeyRing = new MpProxyKeyRing(1, key),
            };
            var errors = options.Validate();
            if (errors.Count > 0)
            {
                foreach (var error in errors)
                {
                    stderr.WriteLine(error);
                }

                return ExitCodes.Usage;
            }

            return Run(options);
        });
        return command;
    }

    private static int Run(ProxyEngineOptions options)
    {
        var log = new Lock();
        void Log(string line)
        {
            lock (log)
            {
                Console.Out.WriteLine(line);
                Console.Out.Flush();
            }
        }

        using var stop = new CancellationTokenSource();
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        var engine = new ProxyEngine(options, TimeProvider.System, Log);
        try
        {
            engine.StartAsync(stop.Token).GetAwaiter().GetResult();
            Log(string.Create(CultureInfo.InvariantCulture,
                $"proxysel: running role={options.Negotiation.Role} mode={options.Negotiation.Mode} policy={options.Negotiation.Policy} id={options.Negotiation.ProxyId} ports={string.Join(',', options.Ports)} queue={options.QueueNumber}"));
            stop.Token.WaitHandle.WaitOne();
            Log("proxysel: stopping");
        }
        finally
        {
            engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        Log($"proxysel: stopped, rules removed; {engine.Counters}");
        return ExitCodes.Ok;
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
