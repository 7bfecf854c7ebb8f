using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ProxySelection.Engine;
using ProxySelection.Host.Telemetry;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host.Hosting;

/// <summary>What <see cref="ProxyConfiguration.Load"/> produced: engine options, or every error found.</summary>
internal sealed record ProxyConfigurationResult(ProxyHostOptions? Options, ProxyEngineOptions? Engine, IReadOnlyList<string> Errors)
{
    public bool IsValid => Errors.Count == 0;

    /// <summary>The checked configuration the options were bound from (the host binds it again, and reads <c>Logging</c> from it).</summary>
    public BoundConfiguration? Bound { get; init; }

    /// <summary>The <c>Telemetry</c> section (exporters); all off when the section is absent.</summary>
    public TelemetryOptions Telemetry { get; init; } = new();
}

/// <summary>
/// <c>proxysel run</c>'s configuration, in rising precedence: the JSON file (<c>--config</c>), environment variables
/// prefixed <c>PROXYSEL_</c> (<c>PROXYSEL_Proxy__ProbeTimeout=300ms</c>), then command-line overrides
/// (<c>--set Proxy:ProbeTimeout=300ms</c> and the long-standing flags such as <c>--proxy-id</c>).
/// Unknown keys are errors, not ignored: a typo would otherwise silently run the default. Every value is checked by
/// <see cref="ConfigurationSchema"/> against the options classes, then bound (the binder's source generator) and
/// validated through Microsoft.Extensions.Options (<see cref="ProxyOptionsRegistration.AddProxyOptions"/>).
/// </summary>
internal static class ProxyConfiguration
{
    public const string EnvironmentPrefix = "PROXYSEL_";

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
        var schema = new ConfigurationSchema(errors);
        string[] sections = [ProxyHostOptions.SectionName, TelemetryOptions.SectionName, LoggingSection];
        foreach (var section in configuration.GetChildren())
        {
            switch (sections.FirstOrDefault(s => string.Equals(s, section.Key, StringComparison.OrdinalIgnoreCase)))
            {
                case ProxyHostOptions.SectionName:
                    schema.Check(section, ProxyHostOptions.SectionName, typeof(ProxyHostOptions));
                    break;
                case TelemetryOptions.SectionName:
                    schema.Check(section, TelemetryOptions.SectionName, typeof(TelemetryOptions));
                    break;
                case LoggingSection:
                    CheckLogging(section, schema);
                    break;
                default:
                    errors.Add($"{ConfigurationSchema.Quote(section.Key)}: unknown section{ConfigurationSchema.Suggest(section.Key, sections)}; the configuration has the sections {string.Join(", ", sections)}");
                    break;
            }
        }

        if (errors.Count > 0)
        {
            return new ProxyConfigurationResult(null, null, errors);
        }

        var bound = new BoundConfiguration(new ConfigurationBuilder().AddInMemoryCollection(schema.Values).Build(), schema);
        using var provider = new ServiceCollection().AddProxyOptions(bound).BuildServiceProvider();
        var options = Resolve<ProxyHostOptions>(provider, errors);
        var telemetry = Resolve<TelemetryOptions>(provider, errors);
        if (options is not null && options.EventsFile is { Length: > 0 } eventsFile && EventsFileProblem(eventsFile) is { } eventsError)
        {
            errors.Add(Key(nameof(ProxyHostOptions.EventsFile)) + ": " + eventsError);
        }

        if (errors.Count > 0 || options is null || telemetry is null)
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
            : new ProxyConfigurationResult(options, engine, []) { Telemetry = telemetry, Bound = bound };
    }

    /// <summary>The options bound and validated (<see cref="ProxyHostOptionsValidator"/>, <see cref="TelemetryOptionsValidator"/>), or null with the failures added.</summary>
    private static T? Resolve<[System.Diagnostics.CodeAnalysis.DynamicallyAccessedMembers(System.Diagnostics.CodeAnalysis.DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] T>(
        IServiceProvider provider, List<string> errors)
        where T : class
    {
        try
        {
            return provider.GetRequiredService<IOptions<T>>().Value;
        }
        catch (OptionsValidationException e)
        {
            errors.AddRange(e.Failures);
        }
        catch (InvalidOperationException e)
        {
            // The binder, should the schema have let through something it cannot read: still a refusal, not a crash.
            errors.Add(e.Message);
        }

        return null;
    }

    /// <summary>The event file is opened at start: a folder, or a file in a folder that does not exist, is refused now.</summary>
    private static string? EventsFileProblem(string file)
    {
        string path;
        try
        {
            path = Path.GetFullPath(file);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return $"\"{ConfigurationSchema.Quote(file)}\" is not a usable path: {e.Message}";
        }

        if (Directory.Exists(path))
        {
            return $"{path} is a folder; name a file";
        }

        var folder = Path.GetDirectoryName(path);
        return folder is not null && !Directory.Exists(folder) ? $"the folder {folder} does not exist" : null;
    }

    /// <summary>The <c>Logging</c> section of Microsoft.Extensions.Logging: <c>LogLevel</c> by category, each a level name.</summary>
    private static void CheckLogging(IConfigurationSection logging, ConfigurationSchema schema)
    {
        const string LevelKey = "LogLevel";
        if (!string.IsNullOrEmpty(logging.Value))
        {
            schema.Fail(LoggingSection, $"expected a section with {LevelKey}, not a value");
        }

        string[] levels = [.. Enum.GetNames<LogLevel>()];
        foreach (var child in logging.GetChildren())
        {
            if (!string.Equals(child.Key, LevelKey, StringComparison.OrdinalIgnoreCase))
            {
                schema.Fail(LoggingSection + ":" + ConfigurationSchema.Quote(child.Key), $"unknown key{ConfigurationSchema.Suggest(child.Key, [LevelKey])}; known keys: {LevelKey}");
                continue;
            }

            if (!string.IsNullOrEmpty(child.Value))
            {
                schema.Fail(LoggingSection + ":" + LevelKey, "expected a section of categories and their levels, e.g. \"Default\": \"Debug\"");
            }

            foreach (var category in child.GetChildren())
            {
                string key = $"{LoggingSection}:{LevelKey}:{ConfigurationSchema.Quote(category.Key)}";
                var level = levels.FirstOrDefault(l => string.Equals(l, category.Value?.Trim(), StringComparison.OrdinalIgnoreCase));
                if (category.GetChildren().Any() || level is null)
                {
                    schema.Fail(key, $"\"{ConfigurationSchema.Quote(category.Value ?? "")}\" is not a log level; expected {string.Join(", ", levels)}");
                }
                else
                {
                    schema.Add($"{LoggingSection}:{LevelKey}:{category.Key}", level);
                }
            }
        }
    }

    /// <summary>Microsoft.Extensions.Logging's own section.</summary>
    public const string LoggingSection = "Logging";

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
                // A fifth kept back: on a busy host timers run late, and no SYN may be held beyond ProbeTimeout (issue 12).
                ReleaseMargin = options.ProbeTimeout / 5,
                ProbeRatePerSourcePrefix = options.ProbeRatePerSourcePrefix,
                ProbeRatePerDestination = options.ProbeRatePerDestination,
                ProbeRateGlobal = options.ProbeRateGlobal,
                ProbeRateTableEntries = options.ProbeRateTableEntries,
                Cache = new CapabilityCacheOptions { ObservedTtl = options.ObservedTtl },
            },
            AdoptionTimeout = options.AdoptionTimeout,
            MaxHeldSyns = options.MaxHeldSyns,
            QueueWaitRoom = options.QueueWaitRoom,
            RaisedScheduling = options.RaisedScheduling,
            EdgeInterfaces = [.. options.EdgeInterfaces],
            Ports = [.. options.Ports.Select(p => (ushort)p)],
            QueueNumber = (ushort)options.QueueNumber,
            ChainPrefix = options.ChainPrefix,
            KeyRing = keyRing,
            IdleTimeout = options.IdleTimeout,
            KernelFastPath = options.KernelFastPath,
            KernelSigning = options.KernelSigning,
            KernelJoins = options.KernelJoins,
            Transparent = options.Mode != ProxyMode.Socks,
            Socks = options.SocksEndpoint is null && options.Convert is null
                ? null
                : new ProxySelection.Engine.Fronts.SocksOptions
                {
                    Listen = options.SocksEndpoint is { } socks && TryParseEndPoint(socks, out var listen) ? listen : null,
                    Convert = options.Convert is { } convert && TryParseEndPoint(convert, out var converter) ? converter : null,
                    Credentials = socksUsers,
                    MaxHandshakesPerSource = options.SocksMaxHandshakesPerSource,
                    MaxConnectionsPerSource = options.SocksMaxConnectionsPerSource,
                    DrainAcceptGrace = options.Instance is { Enabled: true } instance ? instance.ConvergenceTime : TimeSpan.Zero,
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
        var path = file;
        string text;
        try
        {
            path = Path.GetFullPath(file, baseDirectory);
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
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

        var path = keyFile;
        byte[] bytes;
        try
        {
            path = Path.GetFullPath(keyFile, baseDirectory);
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
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

    /// <summary>Longer than any setting needs and well inside TimeSpan (about 29,000 years).</summary>
    private const double MaxDurationMilliseconds = 1e12;

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
                // "NaNs", "Infinitys" and "99999999999999h" parse as numbers but are no TimeSpan.
                double milliseconds = number * scale;
                if (!double.IsFinite(milliseconds) || milliseconds < 0 || milliseconds > MaxDurationMilliseconds)
                {
                    return false;
                }

                value = TimeSpan.FromMilliseconds(milliseconds);
                return true;
            }
        }

        return text.Contains(':', StringComparison.Ordinal) && TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value);
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

    private static ProxyConfigurationResult Failed(string error) => new(null, null, [error]);
}

/// <summary>A configuration that passed <see cref="ConfigurationSchema"/>, in the binder's spelling, and the lists it read.</summary>
internal sealed record BoundConfiguration(IConfiguration Configuration, ConfigurationSchema Schema);

/// <summary>The one registration of the options, for <see cref="ProxyConfiguration"/>'s check and for the daemon's host.</summary>
internal static class ProxyOptionsRegistration
{
    public static IServiceCollection AddProxyOptions(this IServiceCollection services, BoundConfiguration bound)
    {
        ArgumentNullException.ThrowIfNull(bound);
        services.AddSingleton<IValidateOptions<ProxyHostOptions>, ProxyHostOptionsValidator>();
        services.AddSingleton<IValidateOptions<TelemetryOptions>, TelemetryOptionsValidator>();
        services.AddOptions<ProxyHostOptions>()
            .Bind(bound.Configuration.GetSection(ProxyHostOptions.SectionName), o => o.ErrorOnUnknownConfiguration = true)
            .PostConfigure(o => bound.Schema.ApplyLists(ProxyHostOptions.SectionName, o))
            .ValidateOnStart();
        services.AddOptions<TelemetryOptions>()
            .Bind(bound.Configuration.GetSection(TelemetryOptions.SectionName), o => o.ErrorOnUnknownConfiguration = true)
            .PostConfigure(o => bound.Schema.ApplyLists(TelemetryOptions.SectionName, o))
            .ValidateOnStart();
        return services;
    }
}
