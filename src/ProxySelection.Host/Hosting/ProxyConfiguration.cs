using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using ProxySelection.Engine;
using ProxySelection.Host.Telemetry;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host.Hosting;

/// <summary>What <see cref="ProxyConfiguration.Load"/> produced: engine options, or every error found.</summary>
internal sealed record ProxyConfigurationResult(ProxyHostOptions? Options, ProxyEngineOptions? Engine, IReadOnlyList<string> Errors)
{
    public bool IsValid => Errors.Count == 0;

    /// <summary>The <c>Telemetry</c> section (exporters); all off when the section is absent.</summary>
    public TelemetryOptions Telemetry { get; init; } = new();
}

/// <summary>
/// <c>proxysel run</c>'s configuration, in rising precedence: the JSON file (<c>--config</c>), environment variables
/// prefixed <c>PROXYSEL_</c> (<c>PROXYSEL_Proxy__ProbeTimeout=300ms</c>), then command-line overrides
/// (<c>--set Proxy:ProbeTimeout=300ms</c> and the long-standing flags such as <c>--proxy-id</c>).
/// Unknown keys are errors, not ignored: a typo would otherwise silently run the default.
/// </summary>
internal static class ProxyConfiguration
{
    public const string EnvironmentPrefix = "PROXYSEL_";

    private static readonly string[] KnownKeys =
    [
        nameof(ProxyHostOptions.Role), nameof(ProxyHostOptions.Mode), nameof(ProxyHostOptions.Policy),
        nameof(ProxyHostOptions.ProxyId), nameof(ProxyHostOptions.Priority), nameof(ProxyHostOptions.KeyFile),
        nameof(ProxyHostOptions.KeyId), nameof(ProxyHostOptions.VerifyKeyFile), nameof(ProxyHostOptions.VerifyKeyId),
        nameof(ProxyHostOptions.Ports), nameof(ProxyHostOptions.QueueNumber), nameof(ProxyHostOptions.Capacity),
        nameof(ProxyHostOptions.AnnounceAddresses),
        nameof(ProxyHostOptions.ProbeTimeout), nameof(ProxyHostOptions.ChainPrefix), nameof(ProxyHostOptions.DrainTimeout),
        nameof(ProxyHostOptions.IdleTimeout), nameof(ProxyHostOptions.ControlSocket), nameof(ProxyHostOptions.Logging),
        nameof(ProxyHostOptions.Socks), nameof(ProxyHostOptions.SocksUsersFile), nameof(ProxyHostOptions.Convert),
        nameof(ProxyHostOptions.EventsFile),
    ];

    /// <summary>The full key of a setting in the <c>Proxy</c> section, as error messages name it.</summary>
    public static string Key(string name) => ProxyHostOptions.SectionName + ":" + name;

    /// <param name="configFile">The JSON file, or null for none (environment and overrides alone).</param>
    /// <param name="overrides"><c>Key=Value</c> pairs, last wins (the command-line provider's syntax without dashes).</param>
    /// <param name="environment">Replaces the process environment (tests); null reads <c>PROXYSEL_*</c> variables.</param>
    /// <param name="defaults">Values below every source, e.g. the command line's own defaults.</param>
    public static ProxyConfigurationResult Load(string? configFile, IEnumerable<string> overrides, IConfigurationSource? environment = null,
        IEnumerable<KeyValuePair<string, string?>>? defaults = null)
    {
        ArgumentNullException.ThrowIfNull(overrides);
        var builder = new ConfigurationBuilder();
        builder.AddInMemoryCollection(defaults ?? []);
        string baseDirectory = Directory.GetCurrentDirectory();
        if (configFile is not null)
        {
            var path = Path.GetFullPath(configFile);
            if (!File.Exists(path))
            {
                return Failed($"{configFile}: configuration file not found");
            }

            baseDirectory = Path.GetDirectoryName(path)!;
            builder.AddJsonFile(path, optional: false, reloadOnChange: false);
        }

        builder.Add(environment ?? ProxyEnvironment());
        var pairs = overrides.ToList();
        foreach (var pair in pairs.Where(p => !p.Contains('=', StringComparison.Ordinal)))
        {
            return Failed($"--set {pair}: expected KEY=VALUE, e.g. --set Proxy:ProbeTimeout=300ms");
        }

        builder.AddCommandLine([.. pairs.Select(p => "--" + p)]);
        IConfigurationRoot configuration;
        try
        {
            configuration = builder.Build();
        }
        catch (InvalidDataException e)
        {
            return Failed(DescribeFileError(configFile, e));
        }
        catch (FormatException e)
        {
            return Failed(DescribeFileError(configFile, e));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Exists, but cannot be opened (a FIFO, a file replaced mid-reload, permissions under a capability-less root).
            return Failed($"{configFile}: cannot read the configuration file: {e.Message}");
        }

        return Read(configuration, baseDirectory);
    }

    /// <summary>
    /// The <c>PROXYSEL_Proxy__*</c> variables only: other <c>PROXYSEL_</c> variables (a tool's, say) are not
    /// configuration and must not make the daemon refuse to start.
    /// </summary>
    private static MemoryConfigurationSource ProxyEnvironment()
    {
        var settings = new List<KeyValuePair<string, string?>>();
        foreach (var section in (string[])[ProxyHostOptions.SectionName, TelemetryOptions.SectionName])
        {
            string prefix = EnvironmentPrefix + section + "__";
            foreach (System.Collections.DictionaryEntry entry in Environment.GetEnvironmentVariables())
            {
                if (entry.Key is string name && name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                {
                    string key = section + ":" + name[prefix.Length..].Replace("__", ":", StringComparison.Ordinal);
                    settings.Add(new(key, entry.Value as string));
                }
            }
        }

        return new MemoryConfigurationSource { InitialData = settings };
    }

    /// <summary>Reads and validates a built configuration; relative key files are taken from <paramref name="baseDirectory"/>.</summary>
    public static ProxyConfigurationResult Read(IConfiguration configuration, string baseDirectory)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var errors = new List<string>();
        foreach (var section in configuration.GetChildren())
        {
            if (!string.Equals(section.Key, ProxyHostOptions.SectionName, StringComparison.OrdinalIgnoreCase)
                && !string.Equals(section.Key, TelemetryOptions.SectionName, StringComparison.OrdinalIgnoreCase))
            {
                errors.Add($"{section.Key}: unknown section{Suggest(section.Key, [ProxyHostOptions.SectionName, TelemetryOptions.SectionName])}; the configuration has the sections {ProxyHostOptions.SectionName} and {TelemetryOptions.SectionName}");
            }
        }

        var options = new ProxyHostOptions();
        foreach (var setting in configuration.GetSection(ProxyHostOptions.SectionName).GetChildren())
        {
            var name = KnownKeys.FirstOrDefault(k => string.Equals(k, setting.Key, StringComparison.OrdinalIgnoreCase));
            if (name is null)
            {
                errors.Add($"{Key(setting.Key)}: unknown key{Suggest(setting.Key, KnownKeys)}; known keys: {string.Join(", ", KnownKeys)}");
                continue;
            }

            var error = Apply(options, name, setting);
            if (error is not null)
            {
                errors.Add(Key(name) + ": " + error);
            }
        }

        errors.AddRange(new ProxyHostOptionsValidator().Validate(null, options).Failures ?? []);
        var telemetry = TelemetryOptions.Read(configuration.GetSection(TelemetryOptions.SectionName), errors);
        if (errors.Count > 0)
        {
            return new ProxyConfigurationResult(null, null, errors);
        }

        var key = LoadKey(options.KeyFile, baseDirectory, out var keyError);
        if (key is null)
        {
            return Failed(Key(nameof(ProxyHostOptions.KeyFile)) + ": " + keyError);
        }

        byte[]? verifyKey = null;
        if (options.VerifyKeyFile is not null)
        {
            verifyKey = LoadKey(options.VerifyKeyFile, baseDirectory, out keyError);
            if (verifyKey is null)
            {
                return Failed(Key(nameof(ProxyHostOptions.VerifyKeyFile)) + ": " + keyError);
            }
        }

        ProxySelection.Engine.Fronts.SocksCredentials? users = null;
        if (options.SocksUsersFile is not null)
        {
            users = LoadUsers(options.SocksUsersFile, baseDirectory, out var usersError);
            if (users is null)
            {
                return Failed(Key(nameof(ProxyHostOptions.SocksUsersFile)) + ": " + usersError);
            }
        }

        var engine = ToEngineOptions(options, key, verifyKey, users);
        var engineErrors = engine.Validate();
        return engineErrors.Count > 0
            ? new ProxyConfigurationResult(null, null, [.. engineErrors])
            : new ProxyConfigurationResult(options, engine, []) { Telemetry = telemetry };
    }

    public static ProxyEngineOptions ToEngineOptions(ProxyHostOptions options, byte[] key, byte[]? verifyKey = null, ProxySelection.Engine.Fronts.SocksCredentials? socksUsers = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var keyRing = new MpProxyKeyRing((byte)options.KeyId, key);
        if (verifyKey is not null && options.VerifyKeyId is { } verifyId)
        {
            keyRing.AcceptNext((byte)verifyId, verifyKey);
        }

        return new ProxyEngineOptions
        {
            Negotiation = new NegotiatorOptions
            {
                Role = options.Role,
                Mode = options.Mode == ProxyMode.Implicit ? SignalingMode.Implicit : SignalingMode.Explicit,
                Policy = options.Policy,
                ProxyId = (byte)options.ProxyId,
                Priority = (byte)options.Priority,
                MaxConnections = options.Capacity,
                ProbeTimeout = options.ProbeTimeout,
            },
            Ports = [.. options.Ports.Select(p => (ushort)p)],
            QueueNumber = (ushort)options.QueueNumber,
            ChainPrefix = options.ChainPrefix,
            KeyRing = keyRing,
            IdleTimeout = options.IdleTimeout,
            Transparent = options.Mode != ProxyMode.Socks,
            Socks = options.SocksEndpoint is null && options.Convert is null
                ? null
                : new ProxySelection.Engine.Fronts.SocksOptions
                {
                    Listen = options.SocksEndpoint is { } socks && TryParseEndPoint(socks, out var listen) ? listen : null,
                    Convert = options.Convert is { } convert && TryParseEndPoint(convert, out var converter) ? converter : null,
                    Credentials = socksUsers,
                },
        };
    }

    /// <summary><c>address:port</c>, IPv6 in brackets; the port 1..65535 is required.</summary>
    public static bool TryParseEndPoint(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out System.Net.IPEndPoint? endPoint)
    {
        endPoint = null;
        // Without a port (or an IPv6 address without brackets) the parsed port is 0: refused, a listener needs one.
        if (!System.Net.IPEndPoint.TryParse(text, out var parsed) || parsed.Port == 0)
        {
            return false;
        }

        endPoint = parsed;
        return true;
    }

    /// <summary>The SOCKS users file (RFC 1929), relative to <paramref name="baseDirectory"/>.</summary>
    public static ProxySelection.Engine.Fronts.SocksCredentials? LoadUsers(string file, string baseDirectory, out string error)
    {
        var path = Path.GetFullPath(file, baseDirectory);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"cannot read {path}: {e.Message}";
            return null;
        }

        var users = ProxySelection.Engine.Fronts.SocksCredentials.Parse(text, out error);
        if (users is null)
        {
            error = $"{path}: {error}";
        }

        return users;
    }

    /// <summary>Hex text (whitespace ignored) or, failing that, the file's raw bytes; a random key when no file is named.</summary>
    public static byte[]? LoadKey(string? keyFile, string baseDirectory, out string error)
    {
        error = "";
        if (keyFile is null)
        {
            return RandomNumberGenerator.GetBytes(32);
        }

        var path = Path.GetFullPath(keyFile, baseDirectory);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"cannot read {path}: {e.Message}";
            return null;
        }

        var text = new string([.. System.Text.Encoding.ASCII.GetString(bytes).Where(c => !char.IsWhiteSpace(c))]);
        var key = text.Length % 2 == 0 && text.Length > 0 && text.All(char.IsAsciiHexDigit) ? Convert.FromHexString(text) : bytes;
        if (key.Length < MpProxyKeyRing.MinimumKeyLength)
        {
            error = $"the key in {path} must be at least {MpProxyKeyRing.MinimumKeyLength} bytes (was {key.Length})";
            return null;
        }

        return key;
    }

    /// <summary>
    /// Durations carry a unit so "250" cannot mean milliseconds to one reader and seconds to another:
    /// <c>250ms</c>, <c>10s</c>, <c>5m</c>, <c>1h</c>, or <c>hh:mm:ss[.fff]</c>.
    /// </summary>
    public static bool TryParseDuration(string? text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        (string Suffix, double Scale)[] units = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)];
        foreach (var (suffix, scale) in units)
        {
            if (text.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)
                && double.TryParse(text.AsSpan(0, text.Length - suffix.Length), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                value = TimeSpan.FromMilliseconds(number * scale);
                return true;
            }
        }

        return text.Contains(':', StringComparison.Ordinal) && TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value);
    }

    private static string? Apply(ProxyHostOptions options, string name, IConfigurationSection setting)
    {
        var value = setting.Value;
        switch (name)
        {
            case nameof(ProxyHostOptions.Role):
                return ParseChoice(value, [("downgrade", ProxyRole.Downgrade), ("upgrade", ProxyRole.Upgrade)], v => options.Role = v);
            case nameof(ProxyHostOptions.Mode):
                return ParseChoice(value, [("explicit", ProxyMode.Explicit), ("implicit", ProxyMode.Implicit), ("socks", ProxyMode.Socks), ("host-configured", ProxyMode.Socks)], v => options.Mode = v);
            case nameof(ProxyHostOptions.Policy):
                return ParseChoice(value, [("first", SelectionPolicy.First), ("nearest-server", SelectionPolicy.NearestServer), ("priority", SelectionPolicy.Priority)], v => options.Policy = v);
            case nameof(ProxyHostOptions.ProxyId):
                return ParseInteger(value, v => options.ProxyId = v);
            case nameof(ProxyHostOptions.Priority):
                return ParseInteger(value, v => options.Priority = v);
            case nameof(ProxyHostOptions.KeyId):
                return ParseInteger(value, v => options.KeyId = v);
            case nameof(ProxyHostOptions.VerifyKeyFile):
                options.VerifyKeyFile = value ?? "";
                return null;
            case nameof(ProxyHostOptions.VerifyKeyId):
                return ParseInteger(value, v => options.VerifyKeyId = v);
            case nameof(ProxyHostOptions.QueueNumber):
                return ParseInteger(value, v => options.QueueNumber = v);
            case nameof(ProxyHostOptions.Capacity):
                return ParseInteger(value, v => options.Capacity = v);
            case nameof(ProxyHostOptions.ProbeTimeout):
                return ParseDuration(value, v => options.ProbeTimeout = v);
            case nameof(ProxyHostOptions.DrainTimeout):
                return ParseDuration(value, v => options.DrainTimeout = v);
            case nameof(ProxyHostOptions.IdleTimeout):
                return ParseDuration(value, v => options.IdleTimeout = v);
            case nameof(ProxyHostOptions.ChainPrefix):
                options.ChainPrefix = value ?? "";
                return null;
            case nameof(ProxyHostOptions.KeyFile):
                options.KeyFile = value ?? "";
                return null;
            case nameof(ProxyHostOptions.Socks):
                options.Socks = value ?? "";
                return null;
            case nameof(ProxyHostOptions.Convert):
                options.Convert = value ?? "";
                return null;
            case nameof(ProxyHostOptions.SocksUsersFile):
                options.SocksUsersFile = value ?? "";
                return null;
            case nameof(ProxyHostOptions.EventsFile):
                options.EventsFile = value ?? "";
                return null;
            case nameof(ProxyHostOptions.ControlSocket):
                options.ControlSocket = value ?? "";
                return null;
            case nameof(ProxyHostOptions.Logging):
                return ParseChoice(value, [("plain", LogFormat.Plain), ("json", LogFormat.Json), ("systemd", LogFormat.Systemd)], v => options.Logging = v);
            case nameof(ProxyHostOptions.AnnounceAddresses):
                options.AnnounceAddresses = setting.Value is { } list
                    ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    : [.. setting.GetChildren().Select(c => c.Value ?? "")];
                return null;
            default:
                return ParsePorts(setting, options);
        }
    }

    /// <summary>A scalar (comma-separated, as <c>--ports</c> gives it) wins over array elements from a lower source.</summary>
    private static string? ParsePorts(IConfigurationSection setting, ProxyHostOptions options)
    {
        var texts = setting.Value is { } scalar
            ? scalar.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : [.. setting.GetChildren().Select(c => c.Value ?? "")];
        var ports = new List<int>();
        foreach (var text in texts)
        {
            if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var port))
            {
                return $"\"{text}\" is not a port number";
            }

            ports.Add(port);
        }

        options.Ports = ports;
        return null;
    }

    private static string? ParseChoice<T>(string? value, (string Name, T Value)[] choices, Action<T> set)
    {
        foreach (var (name, choice) in choices)
        {
            // "nearest-server" and the enum's own spelling "NearestServer" both read.
            if (string.Equals(value, name, StringComparison.OrdinalIgnoreCase)
                || string.Equals(value, name.Replace("-", "", StringComparison.Ordinal), StringComparison.OrdinalIgnoreCase))
            {
                set(choice);
                return null;
            }
        }

        return $"unknown value \"{value}\"; expected {string.Join(", ", choices.Select(c => c.Name))}";
    }

    private static string? ParseInteger(string? value, Action<int> set)
    {
        if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
        {
            return $"\"{value}\" is not a whole number";
        }

        set(number);
        return null;
    }

    private static string? ParseDuration(string? value, Action<TimeSpan> set)
    {
        if (!TryParseDuration(value, out var duration))
        {
            return $"\"{value}\" is not a duration; write it with a unit: 250ms, 10s, 5m, 1h or hh:mm:ss";
        }

        set(duration);
        return null;
    }

    /// <summary>The JSON provider wraps a <see cref="JsonException"/>, whose line is 0-based.</summary>
    private static string DescribeFileError(string? configFile, Exception e)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is JsonException { LineNumber: { } line } json)
            {
                return string.Create(CultureInfo.InvariantCulture,
                    $"{configFile}: line {line + 1}, column {json.BytePositionInLine + 1}: malformed JSON ({FirstSentence(json.Message)})");
            }
        }

        return $"{configFile}: {e.Message}{(e.InnerException is null ? "" : " " + e.InnerException.Message)}";
    }

    private static string FirstSentence(string message)
    {
        // The message repeats the 0-based position ("LineNumber: 2 | ...") that the caller already gave 1-based.
        var end = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        end = end > 0 ? end : message.IndexOf(" Path:", StringComparison.Ordinal);
        return (end > 0 ? message[..end] : message).TrimEnd('.', ' ');
    }

    private static string Suggest(string key, IEnumerable<string> known)
    {
        var best = known.Select(k => (Name: k, Distance: Distance(key.ToUpperInvariant(), k.ToUpperInvariant())))
            .MinBy(c => c.Distance);
        return best.Name is not null && best.Distance <= 3 ? $" (did you mean {best.Name}?)" : "";
    }

    private static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var diagonal = row[0];
            row[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }

        return row[b.Length];
    }

    private static ProxyConfigurationResult Failed(string error) => new(null, null, [error]);
}
