using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Reflection;
using System.Text;
using Microsoft.Extensions.Configuration;

namespace ProxySelection.Host.Hosting;

/// <summary>How an enum member is written in the configuration when kebab-case of its name is not it (<c>http/protobuf</c>).</summary>
[AttributeUsage(AttributeTargets.Field)]
internal sealed class ConfigurationChoiceAttribute(string name) : Attribute
{
    public string Name { get; } = name;
}

/// <summary>
/// Reads a configuration section against an options class before the binder sees it. The options class is the
/// schema: its settable public properties are the keys, their types say what a value must look like. Each refusal
/// names the key (<c>Proxy:ProbeTimeout: "NaNs" is not a duration ...</c>); every error is collected, none thrown.
/// What passes is written out <see cref="Values"/> in the binder's own spelling (durations as <c>c</c>-format
/// TimeSpans, choices as enum names), so the source-generated binder only ever reads values it accepts. Lists are
/// set after binding (<see cref="ApplyLists"/>): the binder appends a list to the default instead of replacing it.
/// </summary>
/// <param name="errors">Where refusals go.</param>
internal sealed class ConfigurationSchema(List<string> errors)
{
    /// <summary>No value of any key is longer (PATH_MAX): an overlong value is junk, not a setting.</summary>
    public const int MaxValueLength = 4096;

    private const DynamicallyAccessedMemberTypes Members = DynamicallyAccessedMemberTypes.PublicProperties;

    private readonly Dictionary<string, string?> _values = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, (PropertyInfo[] Chain, object Value)> _lists = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The checked values, keyed by their full canonical path (<c>Proxy:ProbeTimeout</c>).</summary>
    public IReadOnlyDictionary<string, string?> Values => _values;

    /// <summary>The keys of an options class, as error messages list them.</summary>
    public static IReadOnlyList<string> KeysOf([DynamicallyAccessedMembers(Members)] Type type) => [.. Settable(type).Select(p => p.Name)];

    /// <summary>Checks <paramref name="section"/> (absent is fine: every key has a default) against <paramref name="type"/>; <paramref name="path"/> is its canonical name.</summary>
    public void Check(IConfigurationSection section, string path, [DynamicallyAccessedMembers(Members)] Type type)
    {
        ArgumentNullException.ThrowIfNull(section);
        Check(section, path, type, []);
    }

    /// <summary>Sets each list read from the section bound at <paramref name="root"/> onto the bound instance.</summary>
    public void ApplyLists(string root, object options)
    {
        foreach (var (path, (chain, value)) in _lists)
        {
            if (!path.StartsWith(root + ":", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            object owner = options;
            foreach (var step in chain[..^1])
            {
                owner = step.GetValue(owner)!;
            }

            chain[^1].SetValue(owner, value);
        }
    }

    /// <summary>Records a value checked elsewhere (the <c>Logging</c> section's levels).</summary>
    public void Add(string path, string value) => _values[path] = value;

    public void Fail(string path, string reason) => errors.Add(path + ": " + reason);

    [UnconditionalSuppressMessage("Trimming", "IL2072", Justification = "Nested option classes are bound by the generated binder, which keeps their public properties.")]
    private void Check(IConfigurationSection section, string path, [DynamicallyAccessedMembers(Members)] Type type, PropertyInfo[] chain)
    {
        var properties = Settable(type);
        if (!string.IsNullOrEmpty(section.Value))
        {
            Fail(path, $"expected a section with {string.Join(", ", properties.Select(p => p.Name))}, not a value");
        }

        foreach (var setting in section.GetChildren())
        {
            var property = properties.FirstOrDefault(p => string.Equals(p.Name, setting.Key, StringComparison.OrdinalIgnoreCase));
            if (property is null)
            {
                var names = properties.Select(p => p.Name).ToList();
                Fail(path + ":" + Quote(setting.Key), $"unknown key{Suggest(setting.Key, names)}; known keys: {string.Join(", ", names)}");
                continue;
            }

            string key = path + ":" + property.Name;
            var type2 = property.PropertyType;
            if (ListElement(type2) is { } element)
            {
                CheckList(setting, key, element, [.. chain, property]);
            }
            else if (IsScalar(Nullable.GetUnderlyingType(type2) ?? type2))
            {
                CheckScalar(setting, key, Nullable.GetUnderlyingType(type2) ?? type2);
            }
            else
            {
                Check(setting, key, type2, [.. chain, property]);
            }
        }
    }

    private void CheckScalar(IConfigurationSection setting, string key, Type type)
    {
        if (setting.GetChildren().Any())
        {
            Fail(key, $"expected a single value, not a section or a list (found {Describe(setting)})");
            return;
        }

        // JSON null (or an empty object or array): the key keeps its default.
        if (setting.Value is not { } text)
        {
            return;
        }

        if (TextProblem(text) is { } problem)
        {
            Fail(key, problem);
            return;
        }

        if (Normalize(text, type, out var error) is { } value)
        {
            _values[key] = value;
        }
        else
        {
            Fail(key, error);
        }
    }

    /// <summary>A JSON array, or a comma-separated scalar (what <c>--ports 80,443</c> and the environment give), which wins over elements from a lower source.</summary>
    private void CheckList(IConfigurationSection setting, string key, Type element, PropertyInfo[] chain)
    {
        List<string> texts;
        if (setting.Value is { } scalar)
        {
            texts = [.. scalar.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
        }
        else
        {
            texts = [];
            int index = 0;
            foreach (var item in setting.GetChildren().OrderBy(c => int.TryParse(c.Key, NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : int.MaxValue))
            {
                if (!string.Equals(item.Key, index.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal))
                {
                    Fail(key, $"expected a list (a JSON array or a comma-separated string), not a section with the key \"{Quote(item.Key)}\"");
                    return;
                }

                if (item.GetChildren().Any() || item.Value is null)
                {
                    Fail(key, $"element {index} is {(item.Value is null ? "null" : "not a single value")}; expected a list of single values");
                    return;
                }

                texts.Add(item.Value);
                index++;
            }
        }

        var list = element == typeof(int) ? (System.Collections.IList)new List<int>() : new List<string>();
        foreach (var text in texts)
        {
            if (TextProblem(text) is { } problem)
            {
                Fail(key, problem);
                return;
            }

            if (element == typeof(int))
            {
                if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
                {
                    Fail(key, $"\"{Quote(text)}\" is not a whole number");
                    return;
                }

                list.Add(number);
            }
            else
            {
                list.Add(text);
            }
        }

        _lists[key] = (chain, list);
    }

    /// <summary>The binder's spelling of <paramref name="text"/> as a <paramref name="type"/>, or null with the reason.</summary>
    private static string? Normalize(string text, Type type, out string error)
    {
        error = "";
        if (type == typeof(string))
        {
            return text;
        }

        if (type == typeof(int))
        {
            if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
            {
                return number.ToString(CultureInfo.InvariantCulture);
            }

            error = $"\"{Quote(text)}\" is not a whole number (-2147483648..2147483647)";
            return null;
        }

        if (type == typeof(bool))
        {
            if (bool.TryParse(text, out var flag))
            {
                return flag ? "true" : "false";
            }

            error = $"\"{Quote(text)}\" is not true or false";
            return null;
        }

        if (type == typeof(TimeSpan))
        {
            if (ProxyConfiguration.TryParseDuration(text, out var duration))
            {
                return duration.ToString("c", CultureInfo.InvariantCulture);
            }

            error = $"\"{Quote(text)}\" is not a duration; write it with a unit: 250ms, 10s, 5m, 1h or hh:mm:ss";
            return null;
        }

        if (type == typeof(Uri))
        {
            if (Uri.TryCreate(text, UriKind.Absolute, out var uri))
            {
                return uri.OriginalString;
            }

            error = $"\"{Quote(text)}\" is not an absolute URL";
            return null;
        }

        if (type.IsEnum)
        {
            var choices = Choices(type);
            string wanted = Simplify(text);
            foreach (var (name, member) in choices)
            {
                if (wanted.Length > 0 && (wanted == Simplify(name) || wanted == Simplify(member)))
                {
                    return member;
                }
            }

            error = $"unknown value \"{Quote(text)}\"; expected {string.Join(", ", choices.Select(c => c.Name))}";
            return null;
        }

        throw new NotSupportedException($"no configuration reader for {type}");
    }

    /// <summary>(written name, enum member name) of each member, in declaration order.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2070", Justification = "Enum fields are kept: the generated binder parses them by name.")]
    private static List<(string Name, string Member)> Choices(Type type) =>
        [.. type.GetFields(BindingFlags.Public | BindingFlags.Static)
            .Select(f => (f.GetCustomAttribute<ConfigurationChoiceAttribute>()?.Name ?? Kebab(f.Name), f.Name))];

    private static string Kebab(string name)
    {
        var text = new StringBuilder();
        foreach (char c in name)
        {
            if (char.IsUpper(c) && text.Length > 0)
            {
                text.Append('-');
            }

            text.Append(char.ToLowerInvariant(c));
        }

        return text.ToString();
    }

    private static string Simplify(string text) =>
        new([.. text.Trim().Where(char.IsAsciiLetterOrDigit).Select(char.ToLowerInvariant)]);

    /// <summary>Control characters, unpaired surrogates and overlong values are never a setting.</summary>
    private static string? TextProblem(string text)
    {
        if (text.Length > MaxValueLength)
        {
            return string.Create(CultureInfo.InvariantCulture, $"the value is {text.Length} characters long; at most {MaxValueLength}");
        }

        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsControl(c))
            {
                return string.Create(CultureInfo.InvariantCulture, $"\"{Quote(text)}\" contains the control character U+{(int)c:X4}");
            }

            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                return $"\"{Quote(text)}\" is not valid Unicode (an unpaired surrogate)";
            }
        }

        return null;
    }

    /// <summary>A value as an error message quotes it: control characters escaped, long values cut.</summary>
    public static string Quote(string text)
    {
        const int Shown = 64;
        var shown = new StringBuilder();
        foreach (char c in text.Length > Shown ? text[..Shown] : text)
        {
            shown.Append(char.IsControl(c) || char.IsSurrogate(c) ? string.Create(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}") : c.ToString());
        }

        return text.Length > Shown ? shown.Append("...").ToString() : shown.ToString();
    }

    private static string Describe(IConfigurationSection section)
    {
        var keys = section.GetChildren().Select(c => c.Key).ToList();
        return keys.All(k => int.TryParse(k, NumberStyles.None, CultureInfo.InvariantCulture, out _)) ? "a list" : "a section";
    }

    private static bool IsScalar(Type type) =>
        type == typeof(string) || type == typeof(int) || type == typeof(bool) || type == typeof(TimeSpan) || type == typeof(Uri) || type.IsEnum;

    private static Type? ListElement(Type type) =>
        type == typeof(IReadOnlyList<int>) ? typeof(int) : type == typeof(IReadOnlyList<string>) ? typeof(string) : null;

    private static PropertyInfo[] Settable([DynamicallyAccessedMembers(Members)] Type type) =>
        [.. type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0)];

    public static string Suggest(string key, IEnumerable<string> known)
    {
        var candidates = known.Select(k => (Name: k, Distance: Distance(key.ToUpperInvariant(), k.ToUpperInvariant()))).ToList();
        // MinBy over value tuples throws on an empty sequence (a type whose settable properties the trimmer removed).
        if (candidates.Count == 0)
        {
            return "";
        }

        var best = candidates.MinBy(c => c.Distance);
        return best.Distance <= 3 ? $" (did you mean {best.Name}?)" : "";
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
}
