"""Domain lexicon of the embedded U-NEED-style corpus.

For each of the five release domains: the attribute schema (release attribute names), each
attribute's canonical values (what item_kg.txt stores) and their surface forms (what shoppers and
staff write in dialogues: synonyms, colloquial variants, numbers written different ways), plus
negated surface forms that keep their negation word ("不要烘干", "不含酒精").

A deterministic ~25% of the surface forms of each value (never the first one, never the only one)
are HELD OUT: the generator uses them only in valid/test dialogues, so a lexicon matcher learnt on
the training split is visibly imperfect on the test split.

    lex = Lexicon()                     # or the shared instance: default_lexicon()
    lex.domains                         # ['美妆行业', ...]
    lex.attributes("大家电行业")          # ['品类', '洗衣机类型', ...]
    lex.values("大家电行业", "洗涤重量")   # ['6公斤', '8公斤', ...]
    lex.forms("大家电行业", "洗涤重量", "10公斤")                      # all surface forms
    lex.forms(..., include_held_out=False)                            # train-safe forms only
    lex.negated_forms("大家电行业", "功能需求", "烘干")                 # ['不要烘干', ...]
    lex.is_held_out("大家电行业", "洗涤重量", "十公斤")
    lex.canonical("大家电行业", "洗涤重量", "10kg")                     # ('10公斤', False)
    lex.lookup("大家电行业", "不要烘干")                                # [('功能需求', '烘干', True)]
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

HELD_OUT_RATE = 0.25

CATEGORY = "品类"  # dialogue attribute whose values are leaf categories (KG relation 叶子类目)
PRICE = "价位"  # dialogue attribute whose values are the KG 价格区间 bands 低/中/高
KG_LEAF = "叶子类目"
KG_PRICE = "价格区间"
KG_TOP = "一级类目"
PRICE_BANDS = ("低", "中", "高")

# --------------------------------------------------------------------------------- number helpers
_DIGITS = "零一二三四五六七八九"


def cn_number(n: int, two: str = "二") -> str:
    """Chinese numerals for 0..99999: 24 -> 二十四, 10 -> 十, 128 -> 一百二十八, 2000 -> 两千 (two='两')."""
    if n == 0:
        return "零"
    units = [(10000, "万"), (1000, "千"), (100, "百"), (10, "十")]
    out = []
    rest = n
    zero = False
    for value, name in units:
        d, rest = divmod(rest, value)
        if d:
            if zero:
                out.append("零")
                zero = False
            if d == 1 and value == 10 and not out:
                out.append(name)
            else:
                digit = two if (d == 2 and value >= 1000) else _DIGITS[d]
                out.append(digit + name)
        elif out and rest:
            zero = True
    if rest:
        if zero:
            out.append("零")
        out.append(_DIGITS[rest])
    return "".join(out)


def _join(*forms: str) -> str:
    seen = []
    for f in forms:
        if f and f not in seen:
            seen.append(f)
    return "|".join(seen)


def _kg(ns) -> str:
    return "; ".join(f"{n}公斤=" + _join(f"{n}公斤", f"{cn_number(n)}公斤", f"{n}kg", f"{n}KG", f"{n}千克",
                                         f"{n}公斤左右", f"{cn_number(n)}公斤以上")
                     for n in ns)


def _shoe_sizes(lo: int, hi: int) -> str:
    """Whole and half sizes: 37, 37.5 (37码半, 三十七码半) ..."""
    parts = []
    for n in range(lo, hi + 1):
        parts.append(f"{n}=" + _join(f"{n}码", f"{cn_number(n)}码", f"{n}", f"{n}号", f"{cn_number(n)}号"))
        if n < hi:
            parts.append(f"{n}.5=" + _join(f"{n}.5", f"{n}.5码", f"{n}码半", f"{cn_number(n)}码半"))
    return "; ".join(parts)


def _ages(bands) -> str:
    """Every age of a band, written 24 / 24岁 / 二十四岁 / 24周岁, plus round phrasings (二十多岁)."""
    parts = []
    for lo, hi, label, rough in bands:
        forms = []
        for a in range(lo, hi + 1):
            forms += [f"{a}", f"{a}岁", f"{cn_number(a)}岁", f"{a}周岁", f"{cn_number(a)}"]
        parts.append(f"{label}=" + _join(*forms, *rough))
    return "; ".join(parts)


def _litres(ns) -> str:
    return "; ".join(f"{n}升=" + _join(f"{n}升", f"{cn_number(n)}升", f"{n}L", f"{n}l", f"{n}升左右",
                                       f"{n}L左右") for n in ns)


def _inches(ns) -> str:
    return "; ".join(f"{n}英寸=" + _join(f"{n}寸", f"{cn_number(n)}寸", f"{n}英寸", f"{n}吋", f"{n}寸左右",
                                         f"{cn_number(n)}寸以上") for n in ns)


_PRICE_MODIFIERS = ("以内", "左右", "之内", "上下", "以下", "块以内", "块左右", "元以内")


def _amount_forms(n: int, k_style: bool) -> list[str]:
    """One amount written the ways shoppers write it: 3000, 三千, 3k (phones), 2500 / 两千五."""
    forms = [str(n), cn_number(n, two="两")]
    if n >= 1000 and n % 1000 == 500:
        forms.append(cn_number(n // 1000, two="两") + "千五")
    if k_style and n >= 1000:
        forms.append(f"{n // 1000}k" if n % 1000 == 0 else f"{n / 1000:g}k")
    return forms


def _prices(bands: dict[str, list[int]], extra: dict[str, str] | None = None, k_style: bool = False) -> str:
    """Price needs made compositionally: amount x 以内/左右/之内/上下..., ranges (2000-3000, 两三千),
    'N以上' for the top band, plus the domain's paraphrases (便宜点, 贵点没关系)."""
    parts = []
    for band, amounts in bands.items():
        forms = []
        for n in amounts:
            for a in _amount_forms(n, k_style):
                mods = ("以上", "左右", "起步") if band == "高" else _PRICE_MODIFIERS
                forms += [a + m for m in mods if not (a.endswith("k") and m[0] in "块元")]
        for lo, hi in zip(amounts, amounts[1:]):
            forms += [f"{lo}-{hi}", f"{lo}到{hi}"]
        parts.append(f"{band}=" + _join(*forms, *((extra or {}).get(band, "").split("|"))))
    return "; ".join(parts)


def _gigs(ns, run: bool = False) -> str:
    parts = []
    for n in ns:
        if run:
            label = f"{n}GB"
            forms = (f"{n}G运存", f"{cn_number(n)}G运存", f"运存{n}G", f"{n}G运行内存", f"{n}g运存")
        else:
            num, unit = (n // 1024, "T") if n >= 1024 else (n, "G")
            label = f"{num}{unit}B"
            forms = (f"{num}{unit}", f"{num}{unit.lower()}", label, f"{cn_number(num)}{unit}",
                     *(f"{ram}+{num}" + ("T" if unit == "T" else "") for ram in (4, 6, 8, 12, 16) if 16 * ram <= n))
        parts.append(f"{label}=" + _join(*forms))
    return "; ".join(parts)


# ------------------------------------------------------------------------------------ the schema
@dataclass
class AttributeSpec:
    name: str
    values: dict[str, list[str]]  # canonical -> surface forms (first one never held out)
    leaves: tuple[str, ...] | None = None  # leaf categories the attribute applies to (None: all)
    multi: int = 1  # how many values an item may carry
    asks: tuple[str, ...] = ()  # staff questions about the attribute that list no value
    negations: dict[str, list[str]] = field(default_factory=dict)  # canonical -> negated surface forms
    leaf_values: dict[str, list[str]] = field(default_factory=dict)  # leaf -> canonical values allowed
    weight: float = 1.0  # how often staff ask about it / shoppers care about it
    kg_relation: str = ""  # relation name in item_kg.txt (defaults to the attribute name)

    def __post_init__(self):
        if not self.kg_relation:
            self.kg_relation = {CATEGORY: KG_LEAF, PRICE: KG_PRICE}.get(self.name, self.name)

    def applies_to(self, leaf: str) -> bool:
        return self.leaves is None or leaf in self.leaves

    def values_for(self, leaf: str) -> list[str]:
        return self.leaf_values.get(leaf) or list(self.values)


@dataclass
class DomainSpec:
    name: str
    categories: dict[str, list[str]]  # 一级类目 code -> leaf keys
    leaf_names: dict[str, str]  # leaf key -> 叶子类目 value written in item_kg.txt
    attributes: dict[str, AttributeSpec]
    brands_by_leaf: dict[str, list[str]] = field(default_factory=dict)
    leaf_weights: dict[str, float] = field(default_factory=dict)  # how common each leaf is among sellers

    def leaf_weight(self, leaf: str) -> float:
        return self.leaf_weights.get(leaf, 1.0)

    @property
    def leaves(self) -> list[str]:
        return [leaf for leaves in self.categories.values() for leaf in leaves]

    def code_of(self, leaf: str) -> str:
        for code, leaves in self.categories.items():
            if leaf in leaves:
                return code
        raise KeyError(leaf)


def _parse(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for chunk in text.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        canonical, forms = chunk.split("=", 1)
        out[canonical.strip()] = [f.strip() for f in forms.split("|") if f.strip()]
    return out


def A(name: str, values: str, leaves=None, multi: int = 1, asks=(), neg: str = "", leaf_values=None,
      weight: float = 1.0) -> AttributeSpec:
    return AttributeSpec(name, _parse(values), tuple(leaves) if leaves else None, multi, tuple(asks),
                         _parse(neg) if neg else {}, dict(leaf_values or {}), weight)


# ----------------------------------------------------------------------------------------- 美妆
_SKIN = ["化妆水", "乳液面霜", "面膜", "洁面", "精华", "眼霜", "防晒", "卸妆", "套装"]
BEAUTY = DomainSpec(
    "美妆行业",
    leaf_weights={"化妆水": 2.0, "乳液面霜": 2.0, "面膜": 1.5, "洁面": 1.5, "精华": 1.5, "套装": 1.5},
    categories={"1801": _SKIN, "50010788": ["口红", "粉底液"]},
    leaf_names={"化妆水": "化妆水/爽肤水", "乳液面霜": "乳液/面霜", "面膜": "面膜", "洁面": "洁面",
                "精华": "面部精华", "眼霜": "眼霜", "防晒": "防晒霜", "卸妆": "卸妆", "套装": "护肤套装",
                "口红": "唇膏/口红", "粉底液": "粉底液/膏"},
    attributes={a.name: a for a in [
        A("品类", "化妆水=化妆水|爽肤水|柔肤水|精粹水|护肤水; 乳液面霜=面霜|乳液|保湿霜|面部乳液; "
                  "面膜=面膜|贴片面膜|涂抹面膜|睡眠面膜|面膜贴; 洁面=洗面奶|洁面|洁面乳|洁面膏|洗脸的; "
                  "精华=精华|精华液|精华露|原液; 眼霜=眼霜|眼部精华|眼部护理; 防晒=防晒霜|防晒|防晒乳|防晒喷雾; "
                  "卸妆=卸妆水|卸妆油|卸妆膏|卸妆乳; 套装=套装|水乳|水乳套装|护肤套装|礼盒; "
                  "口红=口红|唇膏|唇釉|唇彩; 粉底液=粉底液|粉底|气垫|底妆",
          asks=["请问您想看哪类产品呢", "亲亲想要什么产品呢", "您想了解哪款产品呢"], weight=0.6),
        A("功效", "补水=补水|水润|锁水|补水分; 保湿=保湿|滋润|保湿滋润|长效保湿; 美白=美白|亮白|提亮肤色|变白; "
                  "抗衰老=抗衰老|抗衰|抗老|抗初老|去皱; 祛痘=祛痘|去痘|控痘|战痘; 控油=控油|吸油|清爽控油; "
                  "修护=修护|修复|修护屏障|修复屏障; 舒缓=舒缓|镇静|舒缓镇静|舒缓泛红; 淡斑=淡斑|祛斑|去斑|淡化色斑; "
                  "清洁=清洁|深层清洁|清洁毛孔|洗得干净; 遮瑕=遮瑕|遮盖|遮瑕力强; 持妆=持妆|不脱妆|持久|不掉妆",
          leaves=_SKIN + ["粉底液"], multi=3,
          leaf_values={"粉底液": ["遮瑕", "持妆", "保湿", "控油"]},
          asks=["请问您对功效有什么要求呢", "亲想要侧重什么功效呢", "您主要想要什么效果呢"], weight=1.6),
        A("肌肤问题", "刺痛=刺痛|疼|刺刺的|有刺痛感; 发痒=发痒|痒|痒痒的|瘙痒; 出油=出油|油光|泛油光|爱出油; "
                    "长痘=痘痘|长痘|闭口|爆痘|红肿痘痘|痘痘肌|冒痘; 干燥=干燥|起皮|紧绷|干巴巴; 泛红=泛红|红血丝|发红|脸红; "
                    "黑头=黑头|毛孔粗大|毛孔大|草莓鼻; 细纹=细纹|皱纹|法令纹|干纹; 暗沉=暗沉|发黄|没有光泽|肤色不均; "
                    "色斑=色斑|斑点|雀斑|晒斑; 过敏=过敏|容易过敏|皮肤敏感|一用就过敏|换季过敏|不耐受",
          leaves=_SKIN, multi=2,
          asks=["请问您目前有什么肌肤问题吗", "皮肤有哪些困扰呢亲", "亲亲平时皮肤有什么问题吗"], weight=1.4),
        A("肤质", "干性=干性|干皮|偏干|干性皮肤|皮肤干; 油性=油性|油皮|偏油|大油皮|油性皮肤; "
                  "混合性=混合性|混油|混干|混合皮|T区油|混干皮|混油皮|混合偏干; 敏感肌=敏感肌|敏感|敏感皮|敏感性皮肤|敏感肌肤; "
                  "中性=中性|中性皮肤|正常肤质|不油不干", leaves=_SKIN + ["粉底液"], multi=2,
          asks=["亲亲您是什么肌肤呢", "请问您的肤质是怎样的呢", "您是什么肤质呀", "皮肤是什么类型的呢"],
          weight=2.2),
        A("年龄", _ages([(18, 24, "18-24岁", ("二十出头", "刚二十", "二十来岁")),
                       (25, 29, "25-29岁", ("二十多岁", "快三十了", "奔三")),
                       (30, 39, "30-39岁", ("三十多岁", "三十出头", "奔四")),
                       (40, 55, "40岁以上", ("四十多岁", "五十多岁", "四十出头"))]),
          leaves=_SKIN, asks=["请问您的芳龄多大", "亲亲今年多大了呢", "方便说下您的年龄吗", "请问您多大年纪呢"],
          weight=1.2),
        A("性别", "男=男|男士|男生|男性|男人; 女=女|女士|女生|女性|女孩子",
          asks=["请问是男士用还是女士用呢", "请问是给谁用的呢"], weight=0.5),
        A("人群", "孕妇=孕妇|孕期|怀孕|准妈妈|哺乳期; 学生=学生|学生党|大学生|高中生|女儿|闺女; "
                  "妈妈=妈妈|老妈|宝妈|中年妈妈|我妈|婆婆|丈母娘; 上班族=上班族|白领|职场人|打工人", asks=["请问是自己用吗", "亲亲是给谁买的呢"], weight=0.6),
        A("价位", _prices({"低": [50, 80, 100, 150], "中": [200, 250, 300, 400], "高": [500, 600, 800, 1000]},
                       {"低": "平价|便宜点|一百多|学生价|几十块", "中": "两三百|中等价位|三四百",
                        "高": "贵点也行|高端|大牌|贵一点没关系"}),
          asks=["亲亲预算大概多少呢", "请问您的预算是多少呢", "价位有要求吗亲"], weight=0.8),
        A("品牌", "兰蔻=兰蔻|lancome; 雅诗兰黛=雅诗兰黛|雅诗|雅诗兰黛家; 欧莱雅=欧莱雅|巴黎欧莱雅; 自然堂=自然堂; "
                  "百雀羚=百雀羚|百雀; 珀莱雅=珀莱雅; 薇诺娜=薇诺娜|薇诺; 资生堂=资生堂|资生; 完美日记=完美日记; "
                  "花西子=花西子; 玉兰油=玉兰油|olay|OLAY; 科颜氏=科颜氏|契尔氏|kiehls",
          asks=["有喜欢的品牌吗亲", "平时用什么牌子呢"], weight=0.5),
        A("成分", "玻尿酸=玻尿酸|透明质酸|玻尿酸成分; 烟酰胺=烟酰胺|VB3|维生素B3; 视黄醇=视黄醇|A醇|维A醇; "
                  "神经酰胺=神经酰胺|神酰; 积雪草=积雪草|积雪草提取物|积雪草精华; 氨基酸=氨基酸|氨基酸配方",
          leaves=_SKIN, multi=2, neg="酒精=不含酒精|无酒精|不要酒精|没有酒精; 香精=不含香精|无香精|不要香精",
          asks=["对成分有要求吗", "有没有在意的成分呢"], weight=0.6),
        A("颜色", "正红色=正红色|正红|大红色; 豆沙色=豆沙色|豆沙|豆沙红; 橘色=橘色|橘调|橘红色; "
                  "奶茶色=奶茶色|裸色|奶咖色; 象牙白=象牙白|一白|白皙色; 自然色=自然色|二白|自然肤色",
          leaves=["口红", "粉底液"], multi=2,
          leaf_values={"口红": ["正红色", "豆沙色", "橘色", "奶茶色"], "粉底液": ["象牙白", "自然色"]},
          asks=["喜欢什么色号呢", "想要什么颜色的呢"], weight=1.0),
    ]},
)

# ----------------------------------------------------------------------------------------- 手机
_PHONES = ["智能手机", "游戏手机", "老年机"]
PHONES = DomainSpec(
    "手机行业",
    leaf_weights={"智能手机": 5.0, "游戏手机": 1.5},
    categories={"1512": _PHONES, "50019780": ["平板电脑"]},
    leaf_names={"智能手机": "手机", "游戏手机": "游戏手机", "老年机": "老人机", "平板电脑": "平板电脑"},
    attributes={a.name: a for a in [
        A("品类", "智能手机=手机|智能手机|新手机|机子; 游戏手机=游戏手机|电竞手机|游戏机子; "
                  "老年机=老人机|老年机|老人手机|老年手机; 平板电脑=平板|平板电脑|pad|iPad",
          asks=["请问想看手机还是平板呢", "亲想买哪类产品呢"], weight=0.4),
        A("品牌", "华为=华为|huawei|HUAWEI; 苹果=苹果|iPhone|iphone|果子; 小米=小米|mi|xiaomi; 红米=红米|Redmi; "
                  "OPPO=OPPO|oppo|欧珀; vivo=vivo|VIVO|维沃; 荣耀=荣耀|honor; 三星=三星|samsung; "
                  "一加=一加|oneplus; 真我=真我|realme; iQOO=iQOO|iqoo|爱酷",
          asks=["有喜欢的品牌吗", "亲亲有偏好的牌子吗"], weight=1.0),
        A("内存", _gigs([64, 128, 256, 512, 1024]), multi=2, leaf_values={"老年机": ["64GB", "128GB"]},
          asks=["内存要多大的呢", "亲亲存储空间需要多大呢", "平时手机里照片视频多吗"], weight=1.4),
        A("运行内存", _gigs([4, 6, 8, 12, 16], run=True), leaves=_PHONES + ["平板电脑"], multi=2,
          leaf_values={"老年机": ["4GB", "6GB"]},
          asks=["运行内存有要求吗", "运存要多大的呢"], weight=1.0),
        A("像素", "4800万=4800万像素|四千八百万像素|48MP|4800万; 5000万=5000万像素|五千万像素|50MP|5000万; "
                  "6400万=6400万像素|六千四百万像素|64MP|6400万; 1亿=一亿像素|1亿像素|108MP|亿级像素|像素要好|像素高一点|像素好的; "
                  "2亿=两亿像素|2亿像素|200MP",
          leaves=_PHONES, asks=["对拍照像素有要求吗", "平时拍照多吗亲"], weight=0.8),
        A("屏幕类型", "直屏=直屏|直面屏|平面屏|直板屏; 曲面屏=曲面屏|曲屏|双曲面|曲面; 折叠屏=折叠屏|折叠|可折叠",
          leaves=["智能手机", "游戏手机"], neg="曲面屏=不要曲面屏|不要曲屏|不喜欢曲面; 折叠屏=不要折叠屏|不要折叠的",
          asks=["喜欢直屏还是曲面屏呢", "屏幕有要求吗"], weight=1.2),
        A("使用场景", "打游戏=打游戏|玩游戏|吃鸡|玩王者|打王者; 拍照=拍照|拍视频|自拍|录vlog; "
                      "上网课=上网课|网课|学习用; 办公=办公|商务|工作用|处理工作; 追剧=追剧|看视频|刷抖音|看电视剧; "
                      "打电话=打电话|接电话|打打电话",
          multi=2, leaf_values={"老年机": ["打电话", "追剧"], "平板电脑": ["上网课", "追剧", "办公", "打游戏"]},
          asks=["平时主要用来做什么呢", "亲亲主要什么用途呢", "请问使用场景是什么呢"], weight=1.6),
        A("功能需求", "续航=续航|续航好|电池耐用|大电池|待机久|电池要大|电池大一点|待机时间长|电池耐用点; 快充=快充|充电快|闪充|超级快充|充电要快; 5G=5G|5g|支持5G; "
                      "NFC=NFC|nfc|刷公交; 防水=防水|防水防尘|不怕水; 轻薄=轻薄|轻一点|薄一点|机身轻; "
                      "大屏=大屏|大屏幕|屏幕大; 流畅=流畅|不卡|运行流畅|丝滑; 大字体=大字体|字大|声音大",
          multi=3, leaf_values={"老年机": ["续航", "大字体", "大屏"]},
          asks=["对功能有什么要求吗", "亲亲比较看重哪方面呢", "有什么特别需要的功能吗"], weight=1.5),
        A("颜色", "黑色=黑色|黑|曜石黑|亮黑色; 白色=白色|白|珍珠白|雪白; 蓝色=蓝色|蓝|天蓝|深海蓝; "
                  "紫色=紫色|紫|暗夜紫; 金色=金色|金|香槟金; 绿色=绿色|绿|苍岭绿; 粉色=粉色|粉|樱花粉",
          multi=3, asks=["喜欢什么颜色呢", "颜色有要求吗亲"], weight=0.7),
        A("人群", "老人=老人|老年人|爸妈|长辈|爷爷奶奶|我爸|我妈|老爸|老妈|爷爷|奶奶|外婆|父母; "
                  "学生=学生|学生党|孩子|小孩|儿子|女儿|初中生; 女生=女生|女孩子|女朋友|老婆; "
                  "男生=男生|男朋友|老公|男孩子",
          asks=["请问是给谁用的呢", "是自己用吗亲"], weight=0.6),
        A("价位", _prices({"低": [500, 800, 1000, 1200, 1500], "中": [2000, 2500, 3000, 3500],
                        "高": [4000, 5000, 6000, 8000]},
                       {"低": "千元机|一千多|便宜点|一两千", "中": "两三千|两千多|中端", "高": "旗舰|贵点没关系|高端|旗舰机"},
                       k_style=True),
          asks=["亲亲预算大概多少呢", "请问您的预算是多少呢", "心理价位是多少呢"], weight=1.3),
    ]},
)

# ----------------------------------------------------------------------------------------- 服装
_TOPS = ["T恤", "衬衫", "卫衣", "外套", "羽绒服", "毛衣"]
_UNDER = ["保暖内衣", "睡衣", "内裤"]
FASHION = DomainSpec(
    "服装行业",
    leaf_weights={"保暖内衣": 1.5, "T恤": 1.3, "羽绒服": 1.3},
    categories={"16": ["连衣裙", "半身裙", "毛衣", "羽绒服"], "30": ["T恤", "衬衫", "卫衣", "外套", "牛仔裤"],
                "1625": _UNDER},
    leaf_names={"T恤": "T恤", "衬衫": "衬衫", "卫衣": "卫衣", "外套": "夹克/外套", "羽绒服": "羽绒服", "毛衣": "毛衣/针织衫",
                "牛仔裤": "牛仔裤", "连衣裙": "连衣裙", "半身裙": "半身裙", "保暖内衣": "保暖套装", "睡衣": "睡衣/家居服套装",
                "内裤": "平角内裤"},
    attributes={a.name: a for a in [
        A("品类", "T恤=T恤|t恤|短T|体恤; 衬衫=衬衫|衬衣|白衬衫; 卫衣=卫衣|套头衫|帽衫; 外套=外套|夹克|风衣|开衫外套; "
                  "羽绒服=羽绒服|羽绒衣|羽绒外套|羽绒; 毛衣=毛衣|针织衫|羊毛衫|打底毛衣; 牛仔裤=牛仔裤|牛仔长裤|牛仔; "
                  "连衣裙=连衣裙|裙子|长裙|连身裙; 半身裙=半身裙|短裙|a字裙; 保暖内衣=保暖内衣|秋衣秋裤|保暖套装|秋衣; "
                  "睡衣=睡衣|家居服|睡衣套装|睡裙; 内裤=内裤|平角内裤|四角裤|平角裤",
          asks=["请问想看什么款式的衣服呢", "亲亲想买什么衣服呢"], weight=0.4),
        A("材质", "纯棉=纯棉|全棉|棉质|100%棉; 冰丝=冰丝|冰丝面料|凉感面料; 莫代尔=莫代尔|modal|莫代尔棉; "
                  "羊毛=羊毛|纯羊毛|绵羊毛; 羊绒=羊绒|山羊绒|羊绒面料; 真丝=真丝|桑蚕丝|丝绸; 聚酯纤维=聚酯纤维|涤纶|化纤; "
                  "棉麻=棉麻|亚麻|麻料; 白鸭绒=白鸭绒|鸭绒|白鹅绒",
          multi=3, neg="聚酯纤维=不要涤纶|不要化纤|别是化纤",
          leaf_values={"羽绒服": ["白鸭绒", "聚酯纤维"], "毛衣": ["羊毛", "羊绒", "纯棉"],
                       "内裤": ["纯棉", "冰丝", "莫代尔"], "牛仔裤": ["纯棉", "棉麻", "聚酯纤维"],
                       **{leaf: ["纯棉", "冰丝", "莫代尔", "真丝", "聚酯纤维", "棉麻"] for leaf in ("T恤", "衬衫")},
                       **{leaf: ["纯棉", "聚酯纤维", "羊毛"] for leaf in ("卫衣", "外套")},
                       **{leaf: ["纯棉", "真丝", "聚酯纤维", "棉麻", "冰丝"] for leaf in ("连衣裙", "半身裙")},
                       **{leaf: ["纯棉", "莫代尔", "羊毛", "羊绒"] for leaf in ("保暖内衣", "睡衣")}},
          asks=["要什么材质的呢亲爱哒", "对面料有要求吗", "喜欢什么材质的呢"], weight=1.5),
        A("季节", "春=春天|春季|春款|春天穿; 夏=夏天|夏季|夏款|热天; 秋=秋天|秋季|秋款|秋天穿; 冬=冬天|冬季|冬款|冷天",
          multi=2, asks=["请问是什么季节穿呢", "亲亲打算什么时候穿呀"], weight=1.0),
        A("款式", "宽松=宽松|宽松款|oversize|宽大; 修身=修身|显瘦|修身款|紧身; 圆领=圆领|圆口; v领=v领|V领|鸡心领; "
                  "连帽=连帽|带帽子|有帽子; 长袖=长袖|长袖款; 短袖=短袖|半袖; 高腰=高腰|高腰款; 直筒=直筒|直筒款|直筒版型; "
                  "无痕=无痕|无缝|无痕款",
          multi=3, leaf_values={"牛仔裤": ["高腰", "直筒", "修身", "宽松"], "半身裙": ["高腰", "修身", "宽松"],
                                "内裤": ["无痕", "宽松", "修身"], "保暖内衣": ["圆领", "v领", "修身", "无痕"]},
          asks=["喜欢什么款式的呢", "对版型有要求吗", "款式上有什么要求吗"], weight=1.2),
        A("颜色", "黑色=黑色|黑|纯黑; 白色=白色|白|米白色|纯白; 灰色=灰色|灰|浅灰; 蓝色=蓝色|蓝|雾霾蓝|浅蓝; "
                  "红色=红色|红|酒红; 粉色=粉色|粉|浅粉; 卡其色=卡其色|卡其|驼色; 藏青色=藏青色|藏青|深蓝; "
                  "绿色=绿色|绿|墨绿; 米色=米色|杏色|奶白",
          multi=3, asks=["喜欢什么颜色呢", "颜色有偏好吗亲"], weight=0.8),
        A("尺码", "S=S|S码|小码|小号; M=M|M码|中码|中号; L=L|L码|大号|L号; XL=XL|XL码|加大码|加大号; "
                  "XXL=XXL|2XL|XXL码|特大码",
          multi=3, asks=["亲亲平时穿什么码呢", "请问您的身高体重是多少呢", "尺码是多少呢"], weight=1.3),
        A("服装厚度", "薄款=薄款|轻薄款|薄一点|薄薄的; 常规=常规|常规款|不厚不薄|厚度适中; 加厚=加厚|厚款|厚一点|加绒",
          leaves=_TOPS + _UNDER + ["连衣裙", "牛仔裤"], neg="加厚=不要太厚|别太厚|不要加厚; 薄款=不要太薄|别太薄",
          asks=["要厚一点还是薄一点的呢", "对厚度有要求吗"], weight=1.0),
        A("性别", "男=男|男士|男生|男款|男的; 女=女|女士|女生|女款|女的",
          leaves=_TOPS + _UNDER + ["牛仔裤"], asks=["是男款还是女款呢", "请问是给男生还是女生买呢"], weight=0.7),
        A("功能需求", "保暖=保暖|暖和|抗寒|保暖性好; 透气=透气|不闷|透气性好; 速干=速干|干得快|吸汗速干; "
                      "舒适=舒适|舒服|穿着舒服|亲肤; 防晒=防晒|防紫外线|防晒功能; 抗皱=抗皱|免烫|不起皱",
          multi=2, asks=["对功能有要求吗", "亲亲比较看重哪方面呢"], weight=1.0),
        A("使用场景", "上班=上班|通勤|上班穿|职场; 运动=运动|健身|跑步穿; 居家=居家|在家穿|宅家; "
                      "约会=约会|出去玩|逛街; 旅游=旅游|出游|度假",
          multi=2, leaf_values={**{leaf: ["上班", "约会", "旅游"] for leaf in ("连衣裙", "半身裙", "衬衫")},
                               **{leaf: ["居家"] for leaf in ("睡衣", "保暖内衣", "内裤")}}, asks=["平时什么场合穿呢", "亲是上班穿还是日常穿呢"], weight=0.8),
        A("人群", "学生=学生|学生党|大学生; 中老年=中老年|老人|爸妈|中年人|我爸|我妈|老爸|老妈|爸爸|妈妈|父母|爷爷|奶奶; "
                  "孕妇=孕妇|孕期|怀孕; 儿童=儿童|小孩|孩子|宝宝|小朋友; 青年=年轻人|儿子|女儿|老公|老婆|男朋友|女朋友",
          asks=["是给谁穿的呢亲", "请问是自己穿吗"], weight=0.5),
        A("价位", _prices({"低": [50, 80, 100, 150], "中": [200, 250, 300], "高": [400, 500, 800, 1000]},
                       {"低": "便宜点|几十块|平价", "中": "两三百|一两百", "高": "贵点没关系|好一点的|高端"}),
          asks=["亲亲预算大概多少呢", "请问价位有要求吗"], weight=0.6),
        A("品牌", "优衣库=优衣库|UNIQLO|uniqlo; 南极人=南极人|南极; 恒源祥=恒源祥; 波司登=波司登; 森马=森马; "
                  "太平鸟=太平鸟|peacebird; 海澜之家=海澜之家|海澜; 猫人=猫人; 三枪=三枪; 雪中飞=雪中飞",
          asks=["有喜欢的牌子吗"], weight=0.4),
    ]},
)

# ----------------------------------------------------------------------------------------- 鞋类
_SPORT = ["跑步鞋", "篮球鞋", "板鞋", "帆布鞋", "休闲鞋"]
_WOMEN = ["高跟鞋", "单鞋", "凉鞋", "靴子"]
SHOES = DomainSpec(
    "鞋类行业",
    leaf_weights={"休闲鞋": 2.0, "跑步鞋": 1.5, "板鞋": 1.3},
    categories={"50012029": _SPORT, "50006843": _WOMEN, "50011740": ["皮鞋", "拖鞋"]},
    leaf_names={"跑步鞋": "跑步鞋", "篮球鞋": "篮球鞋", "板鞋": "板鞋", "帆布鞋": "帆布鞋", "休闲鞋": "休闲运动鞋",
                "高跟鞋": "高跟鞋", "单鞋": "单鞋", "凉鞋": "凉鞋", "靴子": "靴子", "皮鞋": "商务皮鞋", "拖鞋": "拖鞋"},
    attributes={a.name: a for a in [
        A("品类", "跑步鞋=跑步鞋|跑鞋|慢跑鞋; 篮球鞋=篮球鞋|球鞋|实战篮球鞋; 板鞋=板鞋|小白鞋|滑板鞋; "
                  "帆布鞋=帆布鞋|布鞋|帆布板鞋; 休闲鞋=休闲鞋|运动鞋|老爹鞋|休闲运动鞋; 高跟鞋=高跟鞋|细跟鞋|高跟; "
                  "单鞋=单鞋|平底鞋|乐福鞋|豆豆鞋; 凉鞋=凉鞋|罗马凉鞋|沙滩鞋; 靴子=靴子|短靴|马丁靴|雪地靴; "
                  "皮鞋=皮鞋|商务皮鞋|正装鞋; 拖鞋=拖鞋|凉拖|人字拖|拖鞋子",
          asks=["亲亲想看什么鞋呢", "请问想买哪种鞋呢"], weight=0.4),
        A("鞋码", _shoe_sizes(35, 45), multi=6,
          asks=["亲亲平时穿多大码呢", "请问您穿几码的鞋呢", "脚长多少呢亲"], weight=2.0),
        A("鞋底材质", "橡胶=橡胶|橡胶底|胶底; EVA=EVA|eva|EVA底; 牛筋底=牛筋底|牛筋|牛筋软底; PU=PU|pu底|PU底; "
                      "泡棉=泡棉|缓震泡棉|泡棉底",
          asks=["对鞋底有要求吗", "鞋底要什么材质的呢"], weight=0.8),
        A("跟高", "平跟=平跟|平底|无跟; 低跟=低跟|3厘米|三厘米|3cm|三公分; 中跟=中跟|5厘米|五厘米|5cm|五公分; "
                  "高跟=高跟款|8厘米|八厘米|8cm|八公分",
          leaves=_WOMEN + ["皮鞋"], neg="高跟=不要太高的跟|不要高跟|跟别太高",
          leaf_values={"高跟鞋": ["中跟", "高跟"], "皮鞋": ["平跟", "低跟"]},
          asks=["跟高有要求吗", "喜欢高一点的跟还是平底呢"], weight=1.3),
        A("材质", "真皮=真皮|头层牛皮|牛皮; 网面=网面|网布|透气网面; 帆布=帆布|帆布面; 反绒皮=反绒皮|翻毛皮|麂皮; "
                  "飞织=飞织|针织鞋面|飞织面; 超纤=超纤|超纤皮|超纤革",
          multi=2, neg="人造革=不要人造革|不要假皮|不要PU皮",
          leaf_values={"帆布鞋": ["帆布"], "跑步鞋": ["网面", "飞织"], "皮鞋": ["真皮", "超纤"]},
          asks=["对鞋面材质有要求吗", "喜欢什么材质的呢"], weight=1.0),
        A("季节", "春=春天|春季|春秋款; 夏=夏天|夏季|夏款|热天; 秋=秋天|秋季|秋款; 冬=冬天|冬季|冬款|加绒款",
          multi=2, asks=["什么季节穿呢亲", "打算什么时候穿呢"], weight=0.8),
        A("款式", "低帮=低帮|低帮款; 高帮=高帮|高帮款|中帮; 一脚蹬=一脚蹬|懒人鞋|无鞋带; 系带=系带|绑带|鞋带款; "
                  "尖头=尖头|尖头款; 圆头=圆头|圆头款; 厚底=厚底|松糕底|增高底",
          multi=2, asks=["喜欢什么款式的呢", "要高帮还是低帮的呢"], weight=1.0),
        A("颜色", "黑色=黑色|黑|全黑; 白色=白色|白|纯白|小白; 灰色=灰色|灰; 米色=米色|米白|奶白色; "
                  "红色=红色|红; 粉色=粉色|粉; 棕色=棕色|咖啡色|焦糖色",
          multi=3, asks=["喜欢什么颜色呢", "颜色有要求吗亲"], weight=0.8),
        A("功能需求", "防滑=防滑|不打滑|抓地; 透气=透气|不闷脚|透气性好; 减震=减震|缓震|回弹好; "
                      "轻便=轻便|轻盈|不累脚|很轻; 耐磨=耐磨|耐穿|不易坏; 增高=增高|内增高|显高; 防水=防水|防泼水|不怕水",
          multi=3, asks=["对功能有要求吗", "亲亲比较看重哪方面呢"], weight=1.2),
        A("使用场景", "跑步=跑步|慢跑|马拉松; 上班=上班|通勤|上班穿; 打篮球=打篮球|打球|篮球场; 徒步=徒步|爬山|户外; "
                      "日常=日常|平时穿|日常穿; 婚礼=婚礼|结婚|伴娘",
          multi=2, leaf_values={**{leaf: ["上班", "日常", "婚礼"] for leaf in _WOMEN + ["皮鞋"]},
                                "拖鞋": ["日常"], "跑步鞋": ["跑步", "日常", "徒步"], "篮球鞋": ["打篮球", "日常"]},
          asks=["平时主要什么场合穿呢", "主要用来做什么运动呢"], weight=1.0),
        A("人群", "男=男|男士|男生|男款|男的|男孩; 女=女|女士|女生|女款|女的|女孩; 学生=学生|学生党|中学生; "
                  "中老年=中老年|老人|爸妈|老年人|我爸|我妈|老爸|老妈|爸爸|妈妈|父母; 孕妇=孕妇|孕期|怀孕; "
                  "儿童=儿童|小孩|孩子|宝宝|小朋友; 青年=年轻人|儿子|女儿|老公|老婆|男朋友|女朋友",
          multi=2, asks=["是给谁买的呢亲", "是男款还是女款呢", "是男生穿还是女生穿呢"], weight=1.0),
        A("品牌", "耐克=耐克|Nike|nike|勾子; 阿迪达斯=阿迪达斯|阿迪|adidas; 李宁=李宁|lining; 安踏=安踏|anta; "
                  "特步=特步|xtep; 回力=回力|warrior; 斯凯奇=斯凯奇|skechers; 百丽=百丽|belle; 鸿星尔克=鸿星尔克|尔克",
          asks=["有喜欢的品牌吗"], weight=0.5),
        A("价位", _prices({"低": [100, 150, 200], "中": [300, 400, 500], "高": [600, 800, 1000, 1500]},
                       {"低": "便宜点|一两百|平价", "中": "两三百|三四百", "高": "贵点没关系|好一点的"}),
          asks=["亲亲预算大概多少呢", "心理价位是多少呢"], weight=0.6),
    ]},
)

# --------------------------------------------------------------------------------------- 大家电
APPLIANCES = DomainSpec(
    "大家电行业",
    leaf_weights={"洗衣机": 3.5, "冰箱": 3.0, "空调": 2.5, "电视": 2.0},
    categories={"50022703": ["洗衣机", "烘干机", "冰箱", "空调", "电视", "热水器", "油烟机", "洗碗机"]},
    leaf_names={"洗衣机": "洗衣机", "烘干机": "干衣机", "冰箱": "冰箱", "空调": "空调", "电视": "平板电视",
                "热水器": "电热水器", "油烟机": "油烟机", "洗碗机": "洗碗机"},
    attributes={a.name: a for a in [
        A("品类", "洗衣机=洗衣机|全自动洗衣机|普通洗衣机|洗衣服的; 烘干机=烘干机|干衣机|衣服烘干机; "
                  "冰箱=冰箱|电冰箱|家用冰箱; 空调=空调|空调机|冷暖空调|挂机空调; 电视=电视|电视机|液晶电视|智能电视; "
                  "热水器=热水器|电热水器|储水式热水器; 油烟机=油烟机|抽油烟机|烟机|吸油烟机; 洗碗机=洗碗机|家用洗碗机|刷碗机",
          asks=["请问想看哪类家电呢", "亲亲想买什么电器呢"], weight=0.4),
        A("洗衣机类型", "波轮=波轮|波轮式|波轮洗衣机; 滚筒=滚筒|滚筒式|滚筒洗衣机; 洗烘一体=洗烘一体|洗烘一体机|洗烘套装; "
                        "双缸=双缸|半自动|双桶",
          leaves=["洗衣机"], asks=["想要什么类型的洗衣机呢", "对洗衣机类型有要求吗"], weight=2.4),
        A("洗涤重量", _kg([6, 7, 8, 9, 10, 12]), leaves=["洗衣机", "烘干机"],
          asks=["请问家里几口人呢", "容量要多大的呢", "平时洗的衣服多吗亲"], weight=1.6),
        A("冰箱类型", "双开门=双开门|两门|双门; 三门=三门|三开门|三门冰箱; 对开门=对开门|对开|大对开; "
                      "十字对开门=十字对开门|十字门|十字对开|四门; 单门=单门|单开门|一个门",
          leaves=["冰箱"], asks=["喜欢什么门型的冰箱呢", "冰箱门体有要求吗"], weight=2.2),
        A("容量", _litres([200, 250, 300, 400, 450, 500, 600, 40, 50, 60, 80]), leaves=["冰箱", "热水器"],
          leaf_values={"冰箱": ["200升", "250升", "300升", "400升", "450升", "500升", "600升"],
                       "热水器": ["40升", "50升", "60升", "80升"]},
          asks=["容量要多大的呢", "家里几口人使用呢"], weight=1.6),
        A("空调匹数", "1匹=1匹|一匹|大1匹|1P|1p; 1.5匹=1.5匹|一匹半|1.5P|1.5p|一点五匹; 2匹=2匹|两匹|2P|二匹; "
                      "3匹=3匹|三匹|3P|3p",
          leaves=["空调"], asks=["房间面积大概多大呢", "要几匹的呢亲"], weight=2.2),
        A("能效等级", "一级能效=一级能效|1级能效|新一级能效|一级|1级; 二级能效=二级能效|2级能效|二级|2级; "
                      "三级能效=三级能效|3级能效|三级|3级",
          leaves=["洗衣机", "冰箱", "空调", "热水器", "洗碗机"],
          asks=["对能效有要求吗", "能效等级有要求吗亲"], weight=1.0),
        A("功能需求", "烘干=烘干|带烘干|烘干功能|能烘干; 除菌=除菌|杀菌|除螨|除菌功能; 变频=变频|直驱变频|变频电机; "
                      "静音=静音|声音小|噪音小|安静; 智能=智能|智能控制|wifi控制|手机控制|app控制; "
                      "省电=省电|节能|耗电少; 皮实耐用=皮实耐用|耐用|皮实|质量好; 功能简单=功能简单|简单好用|操作简单; "
                      "自清洁=自清洁|自动清洁|自清洗; 风冷无霜=风冷无霜|风冷|无霜|不结霜; 速热=速热|加热快|即热|出水快",
          multi=3, neg="烘干=不要烘干|不带烘干|不需要烘干|不要烘干功能; 智能=不要智能|不需要智能|不要wifi",
          leaf_values={"洗衣机": ["烘干", "除菌", "变频", "静音", "智能", "省电", "皮实耐用", "功能简单"],
                       "烘干机": ["除菌", "静音", "智能", "省电"],
                       "冰箱": ["风冷无霜", "变频", "静音", "省电", "智能", "除菌"],
                       "空调": ["变频", "静音", "省电", "自清洁", "智能"], "电视": ["智能", "省电"],
                       "热水器": ["速热", "省电", "智能", "除菌"], "油烟机": ["静音", "自清洁", "智能"],
                       "洗碗机": ["除菌", "烘干", "智能", "静音"]},
          asks=["对功能有什么要求吗", "亲亲比较看重哪些功能呢", "有什么特别需要的功能吗"], weight=1.6),
        A("屏幕类型", "OLED=OLED|oled|OLED屏; QLED=QLED|量子点|qled; LED=LED|液晶屏|普通液晶; "
                      "MiniLED=MiniLED|miniled|Mini LED屏",
          leaves=["电视"], asks=["对屏幕有要求吗", "屏幕类型有偏好吗"], weight=1.4),
        A("屏幕尺寸", _inches([32, 43, 50, 55, 65, 75, 85, 100]), leaves=["电视"],
          asks=["要多大尺寸的呢", "客厅大概多大呢亲"], weight=2.0),
        A("使用场景", "家用=家用|家里用|自己家用; 租房=租房|出租屋|租房用; 卧室=卧室|房间|主卧; 客厅=客厅|大客厅; "
                      "老人用=老人用|给老人用|爸妈用; 宿舍=宿舍|员工宿舍",
          asks=["请问是放在哪里用呢", "平时谁在用呢亲"], weight=0.8),
        A("品牌", "海尔=海尔|haier; 美的=美的|midea; 格力=格力|gree; 小天鹅=小天鹅|天鹅; 西门子=西门子|siemens; "
                  "松下=松下|panasonic; TCL=TCL|tcl; 海信=海信|hisense; 小米=小米|米家; 容声=容声|容声冰箱; "
                  "方太=方太|fotile; 老板=老板电器|老板牌",
          asks=["有喜欢的品牌吗亲", "品牌有要求吗"], weight=0.7),
        A("款式", "性价比高=性价比高|性价比|高性价比|实惠|划算; 嵌入式=嵌入式|嵌入|可嵌入|全嵌; 超薄=超薄|纤薄|超薄款|薄一点; "
                  "简约=简约|外观简约|简单大方|好看点",
          leaf_values={"洗衣机": ["性价比高", "超薄", "简约"], "冰箱": ["性价比高", "嵌入式", "超薄", "简约"],
                       "电视": ["性价比高", "超薄", "简约"], "洗碗机": ["嵌入式", "性价比高"],
                       "油烟机": ["性价比高", "超薄", "简约"]},
          asks=["外观上有什么要求吗", "对款式有要求吗"], weight=0.6),
        A("价位", _prices({"低": [800, 1000, 1500], "中": [2000, 2500, 3000, 4000], "高": [5000, 6000, 8000, 10000]},
                       {"低": "便宜点|一千多|一两千", "中": "两三千|两千多|三四千", "高": "高端|贵点没关系|上万"}),
          asks=["亲亲预算大概多少呢", "请问预算是多少呢", "心理价位大概多少呢"], weight=1.0),
    ]},
    brands_by_leaf={"空调": ["格力", "美的", "海尔", "TCL", "小米", "松下"],
                    "洗衣机": ["海尔", "美的", "小天鹅", "西门子", "松下", "TCL"],
                    "烘干机": ["海尔", "美的", "小天鹅", "西门子"],
                    "冰箱": ["海尔", "美的", "容声", "西门子", "松下", "TCL"],
                    "电视": ["TCL", "海信", "小米", "松下", "海尔"],
                    "热水器": ["海尔", "美的", "西门子", "方太"], "油烟机": ["方太", "老板", "美的", "西门子"],
                    "洗碗机": ["方太", "西门子", "美的", "老板"]},
)

DOMAIN_SPECS: dict[str, DomainSpec] = {d.name: d for d in (BEAUTY, PHONES, FASHION, SHOES, APPLIANCES)}


# ------------------------------------------------------------------------------------ core values
# What real annotators leave outside a span: the value is the core (男士 -> 男, 普通洗衣机 -> 洗衣机,
# 不要烘干功能 -> 不要烘干, 干性皮肤 -> 干性). A surface form is trimmed to another form of the same
# value that it contains when what is left over on either side is one of these.
DECORATIONS = frozenset({"士", "生", "性", "人", "款", "的", "孩", "孩子", "皮肤", "功能", "普通", "全自动",
                         "式", "机", "洗衣机", "冰箱", "面料", "成分", "配方", "底", "面"})


def core_of(form: str, others: list[str]) -> tuple[int, str]:
    """(offset, core) of `form`: the longest of `others` inside it with only decorations around it."""
    best = (0, form)
    for g in others:
        if g == form or len(g) >= len(form) or len(g) <= len(best[1]) - (best[1] == form) * len(form):
            continue
        at = form.find(g)
        if at < 0:
            continue
        before, after = form[:at], form[at + len(g):]
        if all(not part or part in DECORATIONS for part in (before, after)):
            if best[1] == form or len(g) > len(best[1]):
                best = (at, g)
    return best


# ------------------------------------------------------------------------------------- held out
def _h(text: str) -> float:
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big") / 2 ** 64


def held_out_subset(domain: str, attr: str, canonical: str, forms: list[str], negated: bool = False) -> list[str]:
    """The deterministic ~25% of `forms` held out from training (never forms[0], never all)."""
    n = len(forms)
    if n < 2:
        return []
    tag = f"{domain}|{attr}|{canonical}|{'neg' if negated else 'pos'}"
    k = min(n - 1, int(HELD_OUT_RATE * n + _h(tag)))
    ranked = sorted(forms[1:], key=lambda f: _h(f"{tag}|{f}"))
    return ranked[:k]


# --------------------------------------------------------------------------------------- lexicon
class Lexicon:
    """Read-only view of the domain schemas with held-out bookkeeping (see module docstring)."""

    def __init__(self, specs: dict[str, DomainSpec] | None = None):
        self.specs = specs or DOMAIN_SPECS
        self._forms: dict[tuple[str, str, str, bool], list[str]] = {}
        self._held: dict[tuple[str, str, str, bool], frozenset[str]] = {}
        self._index: dict[str, dict[str, list[tuple[str, str, bool]]]] = {}
        self._leaf_by_name: dict[str, dict[str, str]] = {}
        self._core: dict[tuple[str, str, str], tuple[int, str]] = {}  # (domain, attr, surface) -> core
        for dname, spec in self.specs.items():
            index: dict[str, list[tuple[str, str, bool]]] = {}
            claimed: dict[str, tuple[str, str, bool]] = {}
            for aname, attr in spec.attributes.items():
                for negated, table in ((False, attr.values), (True, attr.negations)):
                    for canonical, forms in table.items():
                        # a surface names one (attribute, value) per domain: first claim wins
                        kept = []
                        for f in forms:
                            owner = claimed.get(f)
                            if owner is None or owner == (aname, canonical, negated):
                                claimed[f] = (aname, canonical, negated)
                                if f not in kept:
                                    kept.append(f)
                        key = (dname, aname, canonical, negated)
                        self._forms[key] = kept
                        for f in kept:  # brand names are written whole (南极人 is not 南极)
                            self._core[(dname, aname, f)] = core_of(f, kept) if aname != "品牌" else (0, f)
                        self._held[key] = frozenset(held_out_subset(dname, aname, canonical, kept, negated))
                        for f in kept:
                            index.setdefault(f, []).append((aname, canonical, negated))
            self._index[dname] = index
            self._leaf_by_name[dname] = {name: leaf for leaf, name in spec.leaf_names.items()}

    # -- schema
    @property
    def domains(self) -> list[str]:
        return list(self.specs)

    def spec(self, domain: str) -> DomainSpec:
        return self.specs[domain]

    def attributes(self, domain: str) -> list[str]:
        return list(self.specs[domain].attributes)

    def attribute(self, domain: str, attr: str) -> AttributeSpec:
        return self.specs[domain].attributes[attr]

    def values(self, domain: str, attr: str) -> list[str]:
        return list(self.specs[domain].attributes[attr].values)

    def kg_relation(self, domain: str, attr: str) -> str:
        return self.specs[domain].attributes[attr].kg_relation

    def attribute_of_relation(self, domain: str, relation: str) -> str | None:
        if relation == KG_LEAF:
            return CATEGORY
        if relation == KG_PRICE:
            return PRICE
        return relation if relation in self.specs[domain].attributes else None

    def leaf_of_name(self, domain: str, leaf_name: str) -> str | None:
        """叶子类目 value in item_kg.txt -> the leaf key (the canonical 品类 value)."""
        spec = self.specs[domain]
        if leaf_name in spec.leaf_names:
            return leaf_name
        return self._leaf_by_name[domain].get(leaf_name)

    # -- surface forms
    def forms(self, domain: str, attr: str, canonical: str, include_held_out: bool = True,
              negated: bool = False) -> list[str]:
        key = (domain, attr, canonical, negated)
        forms = self._forms.get(key, [])
        if include_held_out:
            return list(forms)
        held = self._held[key]
        return [f for f in forms if f not in held]

    def core(self, domain: str, attr: str, surface: str, include_held_out: bool = True) -> tuple[int, str]:
        """(offset, value) that an annotator marks inside `surface` (see DECORATIONS); a core that is a
        held-out form is not used where held-out forms are not allowed (the whole surface is marked)."""
        at, core = self._core.get((domain, attr, surface), (0, surface))
        if not include_held_out and core != surface and self.is_held_out(domain, attr, core):
            return 0, surface
        return at, core

    def negated_forms(self, domain: str, attr: str, canonical: str, include_held_out: bool = True) -> list[str]:
        return self.forms(domain, attr, canonical, include_held_out, negated=True)

    def negatable(self, domain: str, attr: str) -> list[str]:
        return list(self.specs[domain].attributes[attr].negations)

    def held_out_forms(self, domain: str, attr: str, canonical: str, negated: bool = False) -> list[str]:
        key = (domain, attr, canonical, negated)
        return [f for f in self._forms.get(key, []) if f in self._held[key]]

    def is_held_out(self, domain: str, attr: str, surface: str) -> bool:
        for a, canonical, negated in self._index.get(domain, {}).get(surface, ()):
            if a == attr and surface in self._held[(domain, a, canonical, negated)]:
                return True
        return False

    def all_held_out(self, domain: str) -> list[tuple[str, str]]:
        """(attribute, surface) pairs held out in a domain."""
        out = []
        for (d, a, _c, _n), held in self._held.items():
            if d == domain:
                out += [(a, f) for f in sorted(held)]
        return out

    def canonical(self, domain: str, attr: str, surface: str) -> tuple[str, bool] | None:
        """(canonical value, negated) that a surface form of `attr` names, or None."""
        for a, canonical, negated in self._index.get(domain, {}).get(surface, ()):
            if a == attr:
                return canonical, negated
        return None

    def lookup(self, domain: str, surface: str) -> list[tuple[str, str, bool]]:
        """All (attribute, canonical, negated) a surface form names in a domain."""
        return list(self._index.get(domain, {}).get(surface, ()))

    def surfaces(self, domain: str, include_held_out: bool = True) -> dict[str, list[tuple[str, str, bool]]]:
        """surface -> [(attribute, canonical, negated)] for a whole domain (e.g. to build a matcher)."""
        out = {}
        for surface, owners in self._index.get(domain, {}).items():
            if not include_held_out:
                owners = [o for o in owners if surface not in self._held[(domain, o[0], o[1], o[2])]]
            if owners:
                out[surface] = list(owners)
        return out


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return Lexicon()
