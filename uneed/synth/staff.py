"""The customer-service side of a synthetic pre-sales dialogue: questions, recommendations, explanations.

Questions are phrased for the attribute they ask (an age or a budget is asked, never offered as a
menu; a choice is offered only between values a shop assistant would set side by side: the target's
own value and a neighbour). Explanations are selling-point copy built from the explained item's
properties (①② points, figures), never the database fields read aloud.
"""
from __future__ import annotations

import random

from ..schema import LINK_ONLY
from .lexicon import CATEGORY, PRICE, Lexicon
from .text import Utterance

Reply = tuple[str, list[dict]]

EMOTICONS = ("/:065", "/:^_^", "/:801", "/:809", "/:-F", "/:Y", "/:081", "/:066")

# ------------------------------------------------------------------------------------ questions
# Questions that name no value, per attribute ({v}: 用 / 穿); the lexicon's `asks` serve attributes
# missing here.
_ASKS = {
    CATEGORY: ("您想看哪类产品", "想了解哪一类的", "您想要什么类型的", "是想买哪种的", "主要想看什么产品",
               "具体想看哪一类的"),
    "功效": ("您想要什么效果的", "主要想改善哪方面", "对功效有什么要求吗", "比较看重哪方面的功效",
           "平时护肤最想解决什么问题", "需要哪方面的功效"),
    "肌肤问题": ("目前皮肤有什么困扰吗", "脸上有没有什么肌肤问题", "皮肤最近有什么不舒服的情况吗", "平时皮肤有哪些问题",
             "现在皮肤状态怎么样", "皮肤有没有哪里不太舒适"),
    "肤质": ("您是什么肌肤", "您的肤质是怎样的", "平时皮肤是什么类型的", "方便说一下您的肤质吗",
           "您是什么皮肤", "肤质是哪种类型的"),
    "年龄": ("您的芳龄多大", "方便说下您的年龄吗", "请问您今年多大", "您的年龄大概是多少", "使用者多大年纪",
           "年龄方便透露一下吗"),
    "性别": ("是自己用吗", "是买给谁的", "请问是您本人用吗", "使用者是哪位"),
    "人群": ("是给谁{v}的", "是自己{v}吗", "是买给家人的吗", "平时是谁{v}", "是送人还是自己{v}", "给谁买的"),
    PRICE: ("预算多少", "预算大概多少", "您的预算是多少", "心理价位是多少", "价位上有什么要求吗", "大概想买什么价位的",
            "预算方便说一下吗", "价格方面有要求吗"),
    "品牌": ("有喜欢的品牌吗", "平时用什么牌子", "对品牌有要求吗", "有没有偏好的牌子", "之前用的什么牌子的"),
    "成分": ("对成分有要求吗", "有没有在意的成分", "有没有需要避开的成分", "平时用什么成分的比较多"),
    "颜色": ("喜欢什么颜色", "颜色有要求吗", "想要什么颜色的", "平时喜欢深色还是浅色", "对颜色有偏好吗"),
    "内存": ("内存要多大的", "存储空间需要多大", "平时照片视频存得多吗", "内存有要求吗", "需要多大的存储"),
    "运行内存": ("运行内存有要求吗", "运存要多大的", "平时会同时开很多应用吗", "对运行内存有要求吗"),
    "像素": ("像素方面有要求吗", "对相机有要求吗", "对镜头有要求吗", "像素要求高吗"),
    "屏幕类型": ("屏幕有要求吗", "对屏幕形态有偏好吗", "屏幕喜欢哪种的"),
    "使用场景": ("平时主要用来做什么", "主要什么用途", "一般在什么场合{v}", "主要是什么场景使用", "平时用得多的是哪方面"),
    "功能需求": ("对功能有什么要求吗", "比较看重哪方面", "有什么特别需要的功能吗", "最看重哪方面的性能",
             "功能上有没有特别的要求", "有没有必须要有的功能"),
    "材质": ("要什么材质的", "对面料有要求吗", "喜欢什么材质的", "材质方面有要求吗"),
    "季节": ("是什么季节{v}", "打算什么时候{v}", "主要什么季节{v}"),
    "款式": ("喜欢什么款式的", "对版型有要求吗", "款式上有什么要求吗", "想要什么样式的", "外观上有什么要求吗"),
    ("大家电行业", "款式"): ("外观上有什么要求吗", "对款式有要求吗", "喜欢什么样的外观", "对外观和安装方式有要求吗"),
    "尺码": ("平常穿什么码", "您的身高体重是多少", "尺码是多少", "平时一般穿多大的"),
    "服装厚度": ("对厚度有要求吗", "厚薄有要求吗", "想要多厚的"),
    "鞋码": ("平常穿多大码", "您穿几码的鞋", "脚长多少", "鞋码是多少", "一般穿多大的鞋"),
    "鞋底材质": ("对鞋底有要求吗", "鞋底要什么材质的", "喜欢软一点的鞋底还是硬一点的"),
    "跟高": ("跟高有要求吗", "能接受多高的跟", "鞋跟高度有要求吗"),
    "洗衣机类型": ("想要什么类型的", "对类型有要求吗", "想要哪种类型的"),
    "洗涤重量": ("家里几口人", "容量要多大的", "平时洗的衣服多吗", "一次洗得多吗", "需要多大容量的"),
    "冰箱类型": ("喜欢什么门型的", "门体有要求吗", "放的位置宽度大概多少", "想要几个门的"),
    "容量": ("容量要多大的", "家里几口人使用", "平时囤的东西多吗", "需要多大容量的"),
    "空调匹数": ("面积大概多大", "要几匹的", "要装的那间大概多少平", "使用面积有多大"),
    "能效等级": ("对能效有要求吗", "能效等级有要求吗", "比较在意耗电吗"),
    "屏幕尺寸": ("要多大尺寸的", "放的地方大概多大", "观看距离大概多远", "想要多大的屏幕"),
}
# A choice between values, per attribute kind ({} = a value).
_ONE = ("是{}吗", "需要{}的吗", "要{}的吗", "考虑{}的吗", "{}的可以吗", "{}的行吗")
_TWO = ("{}还是{}", "要{}还是{}的", "是{}还是{}", "想要{}的还是{}的", "{}或者{}哪种", "{}和{}哪个更合适")
_CHOICE_TEMPLATES = {
    "肌肤问题": (("有{}的情况吗", "会{}吗", "是不是容易{}"),
             ("有{}或者{}的情况吗", "是想解决{}还是{}的", "主要是{}还是{}")),
    "肤质": (("是{}吗", "是{}的吗", "属于{}吗"), ("是{}还是{}", "偏{}还是{}", "您是{}还是{}呀")),
    "季节": (("是{}{v}吗", "{}{v}的吗"), ("是{}{v}还是{}{v}", "{}还是{}{v}")),
    "功能需求": (("需要{}的吗", "对{}有要求吗", "{}这块看重吗"), ("看重{}还是{}", "更在意{}还是{}")),
    "功效": (("需要{}的吗", "想要{}的吗", "主要是{}吗"), ("想要{}还是{}", "侧重{}还是{}")),
}
# Attributes whose values a shop assistant does not offer as a menu.
_NO_MENU = {"年龄", PRICE, "人群", "性别", "品牌", "尺码", "鞋码", "使用场景", "成分"}
# Ordered attributes: a choice offers the target's value and a neighbour (8公斤还是10公斤).
_ORDERED = {"内存", "运行内存", "像素", "洗涤重量", "容量", "空调匹数", "屏幕尺寸", "能效等级", "跟高", "服装厚度"}

_ASK_LEAD = ("",) * 12 + ("亲，", "亲，", "亲，", "亲亲", "亲亲，", "亲亲，", "好的亲，", "亲，请问", "请问", "请问", "请问", "您好，", "好的，", "好的，",
                          "嗯嗯，", "了解，", "好的呢，", "收到，", "明白，", "好的了解，", "稍等，先问一下，",
                          "为了推荐更合适的，", "冒昧问一下，", "方便的话，", "好的呢，请问", "嗯嗯好的，",
                          "收到，请问", "这边想了解下，", "我先确认一下，", "好嘞，", "没问题，", "可以的，",
                          "好的，那", "那", "嗯，那请问")
_ASK_REASON = ("，这边帮您推荐合适的", "，方便给您推荐", "，帮您挑一款合适的", "，我给您找找", "，这样推荐更准确一些",
               "，这边为您推荐适合您的产品", "，我帮您看看哪款合适", "，好给您推荐", "，我这边帮您筛选一下",
               "，不同情况适合的款不一样", "，这样选得更准", "，我帮您对比一下", "，方便的话说一下",
               "，帮您选个合适的", "，这边好给您搭配", "，我看看店里有没有合适的", "，这个挺关键的",
               "，我给您推荐几款", "，了解了好给您挑", "，免得推荐得不合适")

# -------------------------------------------------------------------------------- recommendations
# ----------------------------------------------------------------------------------- explanations
# Selling points per attribute; {v} = the value, {n}/{m}/{k} = figures drawn from _FIGURES.
_POINTS = {
    "品牌": ("{v}官方正品", "{v}大品牌，品质有保障", "{v}家的明星款", "{v}出品，售后有保障"),
    "功效": ("主打{v}", "{v}效果明显，坚持用{wk}周就能看到变化", "{v}一步到位", "专注{v}"),
    "肌肤问题": ("针对{v}问题温和改善", "有效缓解{v}", "改善{v}，用后肌肤更稳定", "对{v}有明显改善"),
    "肤质": ("适合{v}肌肤使用", "{v}肌肤也能放心用", "尤其适合{v}肌肤", "适合肌肤：{v}肌肤"),
    "人群": ("{v}也可以放心使用", "很适合{v}"),
    "成分": ("主打成分：{v}", "添加{v}", "核心成分{v}，浓度{k}%"),
    "颜色": ("有{v}可选", "{v}很显气质", "{v}百搭不挑人", "{v}是今年的热门色"),
    "材质": ("{v}面料", "采用{v}", "{v}材质，做工细致"),
    "季节": ("{v}穿正合适", "适合{v}穿"),
    "款式": ("{v}设计", "{v}版型，显瘦百搭", "{v}款式，简约耐看"),
    "尺码": ("{v}码都有货", "尺码齐全，{v}都有"),
    "鞋码": ("{v}码都有货", "码数标准，{v}码都有"),
    "服装厚度": ("{v}，穿着不臃肿", "厚度{v}，上身舒服"),
    "使用场景": ("{v}都很合适", "适合{v}", "{v}穿用都可以"),
    "洗涤重量": ("{v}大容量，一次能洗全家的衣物", "{v}容量，三口之家够用", "洗涤容量{v}，被子也能洗"),
    "洗衣机类型": ("{v}设计", "{v}洗护，洗得干净不伤衣"),
    "冰箱类型": ("{v}设计，取放方便", "{v}大空间，分区存储更方便"),
    "容量": ("{v}大容量，够一家人用", "容量{v}，日常使用足够"),
    "空调匹数": ("{v}，适合{n}平米左右的房间", "{v}大风量，制冷制热都快"),
    "能效等级": ("{v}，一年能省电{m}度左右", "{v}，长期开也不心疼电费"),
    "屏幕尺寸": ("{v}大屏，观影沉浸感强", "{v}屏幕，{k}米左右的观看距离刚好"),
    "屏幕类型": ("{v}，画质细腻", "采用{v}设计，看着更舒服"),
    "内存": ("{v}大存储，照片视频随便存", "存储{v}，装应用不用删"),
    "运行内存": ("{v}运存，多开应用不卡", "{v}运行内存，玩游戏也流畅"),
    "像素": ("{v}像素主摄，夜景也清晰", "{v}像素，拍照细节丰富"),
    "鞋底材质": ("{v}大底，防滑耐磨", "{v}鞋底，脚感柔软"),
    "跟高": ("{v}，走路不累", "跟高{v}，久站也舒服"),
}
# Points for particular values, chosen over the attribute's generic points.
# Points that read differently in one domain (款式 of an air conditioner is not a cut).
_DOMAIN_POINTS = {
    ("大家电行业", "款式"): ("{v}外观，放家里很搭", "{v}设计，安装方便", "机身{v}，不占地方"),
    ("大家电行业", "使用场景"): ("{v}也很合适", "很适合{v}"),
    ("老人机", "运行内存"): ("{v}运存，日常用不卡顿",),
    ("老人机", "像素"): ("{v}像素，拍照也清楚",),
    ("冰箱", "容量"): ("{v}大容量，一周的菜都放得下", "容量{v}，够一家人用"),
    ("电热水器", "容量"): ("{v}容量，一家人连着洗也够用", "{v}内胆，出水量足"),
    ("手机行业", "使用场景"): ("{v}都很流畅", "平时{v}完全够用", "很适合{v}"),
    ("美妆行业", "使用场景"): ("{v}使用都合适",),
    ("鞋类行业", "材质"): ("采用{v}鞋面", "{v}鞋面，做工细致", "鞋面是{v}的，好打理"),
    ("鞋类行业", "款式"): ("{v}设计，好搭配", "{v}款，上脚显腿长", "{v}版型，穿脱方便"),
    ("鞋类行业", "使用场景"): ("{v}穿都很合适", "适合{v}", "{v}穿也不累脚"),
}
_VALUE_POINTS = {
    ("功能需求", "续航"): ("{n}mAh大电池，重度使用也能撑一天", "续航给力，出门不用带充电宝"),
    ("功能需求", "快充"): ("{w}W快充，{m2}分钟就能充满", "支持超级快充，充电十分钟刷剧两小时"),
    ("功能需求", "5G"): ("支持双模5G，网速更快",),
    ("功能需求", "NFC"): ("支持NFC，刷公交、门禁都很方便",),
    ("功能需求", "防水"): ("IP68级防水防尘，不小心溅到水也没事", "防泼水设计，下雨天也不怕"),
    ("功能需求", "轻薄"): ("机身仅{g}克，握持轻巧", "轻薄机身，放口袋不坠"),
    ("功能需求", "大屏"): ("大屏设计，看视频更过瘾",),
    ("功能需求", "流畅"): ("{hz}Hz高刷屏，滑动丝滑不卡顿",),
    ("功能需求", "大字体"): ("大字体大音量，老人用着方便", "一键拨号，大按键操作简单"),
    ("功能需求", "烘干"): ("带烘干功能，用完干爽不潮湿", "热风烘干，省去晾晒的麻烦"),
    ("功能需求", "除菌"): ("除菌抑菌，用着更卫生", "高温抑菌，家里有小孩也放心"),
    ("功能需求", "变频"): ("变频运行，更省电也更安静", "变频电机运行稳定，更省电"),
    ("功能需求", "静音"): ("运行噪音低至{db}分贝，晚上也不吵", "静音设计，放卧室也不吵"),
    ("功能需求", "智能"): ("wifi手机远程控制，随时随地操控", "支持APP智能控制，回家前就能提前开启"),
    ("功能需求", "省电"): ("节能省电，一年电费省不少", "一级能效更省电"),
    ("功能需求", "皮实耐用"): ("用料扎实，皮实耐用", "电机质保{y}年，皮实耐用"),
    ("功能需求", "功能简单"): ("按键简单，老人也会用", "操作简单，一键启动"),
    ("功能需求", "自清洁"): ("一键自清洁，省去拆洗麻烦", "{t}度高温自清洁，长期用也干净"),
    ("功能需求", "风冷无霜"): ("风冷无霜，不用手动除霜", "风冷循环，食材保鲜更久"),
    ("功能需求", "速热"): ("{m2}分钟速热，即开即用", "加热快，冬天洗澡不用等"),
    ("功能需求", "防滑"): ("防滑大底，雨天走路也稳", "底纹抓地力强，不容易打滑"),
    ("功能需求", "透气"): ("透气性好，久穿不闷", "鞋面透气，夏天穿也清爽"),
    ("功能需求", "减震"): ("后跟缓震，跑起来不伤膝盖", "回弹中底，减震效果好"),
    ("功能需求", "轻便"): ("单只仅{g}克左右，穿着轻便", "轻盈不累脚"),
    ("功能需求", "耐磨"): ("耐磨橡胶外底，穿很久都不变形",),
    ("功能需求", "增高"): ("内增高{cm}厘米，显高又不累脚",),
    ("功能需求", "保暖"): ("锁温保暖，冬天穿也暖和", "加绒保暖，冷天穿刚好"),
    ("功能需求", "速干"): ("吸湿速干，出汗也不黏身",),
    ("功能需求", "舒适"): ("柔软亲肤，穿着舒服", "贴身穿也很舒服"),
    ("功能需求", "防晒"): ("UPF50+防晒，夏天出门不怕晒",),
    ("功能需求", "抗皱"): ("免烫抗皱，洗完不用熨", "不易起皱，出差带着也方便"),
    ("款式", "性价比高"): ("性价比很高，同价位配置很足", "价格实惠，配置一点不缩水"),
    ("材质", "纯棉"): ("纯棉面料，柔软亲肤，吸汗透气",),
    ("材质", "冰丝"): ("冰丝面料，凉感顺滑，夏天穿很舒服", "冰丝触感，清凉不闷"),
    ("材质", "莫代尔"): ("莫代尔面料，细腻柔滑，贴身穿不闷", "莫代尔材质冰丝触感"),
    ("材质", "羊毛"): ("{k2}%羊毛，保暖蓬松",),
    ("材质", "羊绒"): ("山羊绒面料，轻薄保暖，手感细腻",),
    ("材质", "白鸭绒"): ("{k3}%白鸭绒，蓬松度{p}+，轻暖不臃肿",),
    ("材质", "真皮"): ("头层牛皮鞋面，越穿越软", "真皮材质，透气不臭脚"),
    ("材质", "飞织"): ("一体飞织鞋面，轻盈透气",),
    ("材质", "网面"): ("透气网面，久穿不闷脚",),
    ("成分", "玻尿酸"): ("双分子透明质酸：大小分子双重锁水保湿", "添加玻尿酸，补水锁水"),
    ("成分", "烟酰胺"): ("添加{k}%烟酰胺，提亮肤色，改善暗沉",),
    ("成分", "视黄醇"): ("添加视黄醇，淡化细纹，紧致肌肤",),
    ("成分", "神经酰胺"): ("神经酰胺修护屏障，增强肌肤抵抗力",),
    ("成分", "积雪草"): ("积雪草提取物舒缓泛红，镇静肌肤",),
    ("成分", "氨基酸"): ("氨基酸配方，温和清洁不紧绷",),
}
# Points only a washing machine or dryer has.
_LAUNDRY = {"洗衣机", "干衣机"}
_LAUNDRY_POINTS = {
    ("功能需求", "烘干"): ("洗烘一体，阴雨天也不怕衣服不干", "热泵烘干，低温护衣不伤面料"),
    ("功能需求", "除菌"): ("{t}度高温煮洗，99.9%除菌", "高温除菌除螨，贴身衣物也能放心洗"),
    ("功能需求", "变频"): ("BLDC变频电机，脱水更快更彻底，洁净少残留",),
    ("功能需求", "静音"): ("运行噪音低至{db}分贝，晚上洗衣也不吵",),
}
# Doubled words a value and its template can make, and their repair.
_REPAIRS = (("底鞋底", "底"), ("底大底", "大底"), ("屏屏", "屏"), ("款款", "款"), ("面料面料", "面料"))
# Short slogans that open beauty copy ("舒缓灼热，修护屏障，补水保湿").
_SLOGANS = {"补水": "深层补水", "保湿": "长效保湿", "美白": "提亮肤色", "抗衰老": "紧致抗老", "祛痘": "净痘控油",
            "控油": "清爽控油", "修护": "修护屏障", "舒缓": "舒缓灼热", "淡斑": "淡化色斑", "清洁": "深层清洁",
            "遮瑕": "轻薄遮瑕", "持妆": "持妆不脱"}
_FIGURES = {"wk": (2, 3, 4), "n": (12, 15, 20, 25, 30), "m": (50, 80, 100, 120), "k": (2, 3, 5, 10), "w": (33, 45, 66, 80, 120),
            "m2": (15, 20, 25, 30), "g": (175, 185, 190, 199, 220), "hz": (90, 120, 144), "t": (60, 90, 95),
            "db": (38, 42, 46, 49), "y": (5, 10), "cm": (3, 5, 6), "k2": (50, 70, 80, 100), "k3": (80, 90, 95),
            "p": (600, 650, 700, 800)}
_SKIP = {CATEGORY, PRICE, "性别", "年龄"}  # not selling points: never read aloud
_MARKS = ("①②③④⑤", "(1)(2)(3)(4)(5)", "1.2.3.4.5.")
_OPENERS = ("这款{c}", "这款", "这个", "这款是", "这一款", "这个{c}", "这款{c}的话", "这边推荐的这款")
_CLOSERS = ("", "", "", "", "", "", "", "，很适合您", "，回购率很高", "，现在下单还有赠品", "，您可以放心入手",
            "，评价都很不错", "，这两天活动价很划算", "，有问题随时找我")
# What a point's benefit sounds like, added after some points.
_BENEFITS = ("，用起来更省心", "，细节做得很到位", "，很多老顾客回购", "，品质很稳定", "，口碑一直很好",
             "，日常使用完全够了", "，这个价位很少见", "，体验感很好", "，做工很扎实", "，售后也有保障",
             "，是这款的一大亮点", "，实际用下来反馈很好", "，同价位里算是很突出的")
_ANSWER_LEAD = ("有的，", "有的亲，", "有的哦，", "有货的，", "可以的，", "有的呢，")


class Staff:
    def __init__(self, domain: str, lexicon: Lexicon, rng: random.Random, allow_held_out: bool = True):
        self.domain = domain
        self.lex = lexicon
        self.rng = rng
        self.allow_held_out = allow_held_out
        self.verb = "穿" if domain in ("服装行业", "鞋类行业") else "用"
        self.leaf_name = ""  # of the item being explained

    # -------------------------------------------------------------------------------- questions
    def choose_attrs(self, leaf: str | None, target: dict[str, list[str]], exclude: set[str], k: int) -> list[str]:
        """Attributes to ask about: those that fit the leaf, mostly ones the target carries."""
        spec = self.lex.spec(self.domain)
        pool = [a for a, s in spec.attributes.items()
                if a not in exclude and (leaf is None or s.applies_to(leaf)) and (a != CATEGORY or leaf is None)]
        chosen = []
        for _ in range(k):
            if not pool:
                break
            known = [a for a in pool if a in target]
            cands = known if known and self.rng.random() < 0.75 else pool
            weights = [spec.attributes[a].weight for a in cands]
            a = self.rng.choices(cands, weights=weights)[0]
            chosen.append(a)
            pool.remove(a)
        return chosen

    def _offer(self, attr: str, values: list[str], target: dict[str, list[str]]) -> list[str]:
        """The values a choice question names: the target's own (usually) and a neighbour or sibling."""
        rng = self.rng
        own = [v for v in target.get(attr, ()) if v in values]
        first = rng.choice(own) if own and rng.random() < 0.8 else rng.choice(values)
        if rng.random() < 0.4 or len(values) < 2:
            return [first]
        if attr in _ORDERED:
            i = values.index(first)
            near = [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]
            second = rng.choice(near)
        else:
            second = rng.choice([v for v in values if v != first])
        pair = [first, second]
        rng.shuffle(pair)
        return pair

    def _surface(self, attr: str, value: str) -> str:
        forms = self.lex.forms(self.domain, attr, value, self.allow_held_out) or [value]
        # the first forms are the plain ones a shop assistant writes
        return self.rng.choice(forms[:2] if attr == "季节" else forms[:3])

    def ask(self, attrs: list[str], leaf: str | None, target: dict[str, list[str]]) -> tuple[str, list[dict], dict]:
        """A question (系统提问) about `attrs`; returns (text, annotations, offered surfaces per attribute)."""
        rng = self.rng
        spec = self.lex.spec(self.domain)
        u = Utterance()
        offered: dict[str, list[str]] = {}
        u.say(rng.choice(_ASK_LEAD))
        for i, a in enumerate(attrs):
            if i:
                u.say(rng.choice(("，", "，还有", "，另外", "，然后")))
            aspec = spec.attributes[a]
            values = aspec.values_for(leaf) if leaf else list(aspec.values)
            bank = _ASKS.get((self.domain, a)) or _ASKS.get(a) or tuple(q.rstrip("呢亲~") for q in aspec.asks)
            menu_ok = a not in _NO_MENU and not (a == CATEGORY and not leaf)
            if values and menu_ok and (rng.random() < 0.45 or not bank):
                shown = self._offer(a, values, target)
                surfaces = [self._surface(a, v) for v in shown]
                offered[a] = surfaces
                one, two = _CHOICE_TEMPLATES.get(a, (_ONE, _TWO))
                template = rng.choice(one if len(surfaces) == 1 else two).replace("{v}", self.verb)
                u.fill(template, [(a, s, self.lex.core(self.domain, a, s, self.allow_held_out)) for s in surfaces])
            else:
                u.say(rng.choice(bank).replace("{v}", self.verb).replace("{c}", ""))
                u.asked(a)
        if rng.random() < 0.3:
            u.say(rng.choice(_ASK_REASON))
        text = u.text
        r = rng.random()
        if text.endswith(("吗", "么")):
            u.say("？" if r < 0.08 else "")
        elif r < 0.4:
            u.say("呢")
        elif r < 0.46:
            u.say("？")
        elif r < 0.52:
            u.say("~")
        elif r < 0.56 and "亲" not in text:
            u.say("呢亲")
        if rng.random() < 0.04:
            u.say(rng.choice(EMOTICONS))
        text, attrs_out = u.result()
        return text, attrs_out, offered

    # -------------------------------------------------------------------------- recommendations
    def recommend_text(self) -> str:
        # every recommendation in the real samples and in the paper's appendix F only sends the link
        return LINK_ONLY

    # ----------------------------------------------------------------------------- explanations
    def _point(self, attr: str, values: list[str], used: set[str]) -> str | None:
        rng = self.rng
        if attr == "人群":  # a gender is no selling point ("很适合男")
            values = [v for v in values if v not in ("男", "女")]
            if not values:
                return None
        v = rng.choice(values)
        bank = _LAUNDRY_POINTS.get((attr, v)) if self.leaf_name in _LAUNDRY else None
        bank = bank or _VALUE_POINTS.get((attr, v))
        if bank is None:
            bank = _DOMAIN_POINTS.get((self.leaf_name, attr)) or _DOMAIN_POINTS.get((self.domain, attr)) or \
                _POINTS.get(attr)
            if bank is None:
                return None
            if attr in ("尺码", "鞋码"):
                v = "、".join(values[:4])
            elif attr in ("颜色", "使用场景", "季节") and len(values) > 1 and rng.random() < 0.5:
                v = "、".join(values[:3])
        template = rng.choice(bank)
        figures = {name: rng.choice(options) for name, options in _FIGURES.items() if "{" + name + "}" in template}
        if "{v}肌" in template:  # 敏感肌 + 肌肤 -> 敏感肌肤
            v = v.rstrip("肌")
        point = template.format(v=v, **figures)
        for doubled, single in _REPAIRS:
            point = point.replace(doubled, single)
        unused = [b for b in _BENEFITS if b not in used]
        if unused and rng.random() < 0.3:
            benefit = rng.choice(unused)
            used.add(benefit)
            point += benefit
        return point

    def explain(self, profile: dict[str, list[str]], leaf_name: str | None = None, answer: str = "") -> Reply:
        """Selling-point copy (系统解释) about one recommended item, from its properties (relation ->
        values, as item_kg.txt names them); `answer`: the value the user just asked the item has.
        Not annotated, as in the release."""
        rng = self.rng
        self.leaf_name = (leaf_name or "").split("/")[0]
        relations = [(r, v) for r, v in profile.items() if v and r not in _SKIP and r not in ("一级类目", "叶子类目",
                                                                                                "价格区间")]
        rng.shuffle(relations)
        points: list[str] = []
        used: set[str] = set()  # benefit phrases already said in this copy
        for relation, values in relations:
            p = self._point(relation, values, used)
            if p and p not in points:
                points.append(p)
        if not points:
            points = [rng.choice(("做工扎实，细节处理得很好", "销量很高，好评率98%以上", "店里的热销款，回购率很高"))]
        c = (leaf_name or "").split("/")[0]
        lead = rng.choice(_ANSWER_LEAD) + rng.choice(("{}的有货，", "{}的也有，", "{}的现在有现货，", "")).format(
            answer) if answer else ""
        style = rng.random()
        if style < 0.1 or len(points) == 1:  # short: one or two points
            body = "，".join(points[:rng.randint(1, 2)])
            opener = rng.choice(("这个是", "这款是", "这个", "这款", ""))
            return lead + opener + body + rng.choice(("", "", "哦")), []
        k = min(len(points), rng.randint(3, 6))
        chosen = points[:k]
        head = ""
        functions = [v for v in profile.get("功效", []) if v in _SLOGANS]
        if functions and rng.random() < 0.6:
            head = "，".join(_SLOGANS[v] for v in functions[:3])
        else:
            head = rng.choice(_OPENERS).replace("{c}", c)
        if style < 0.6:  # numbered selling points
            marks = rng.choice(_MARKS)
            step = 3 if marks.startswith("(") else (2 if "." in marks else 1)
            numbered = [f"{marks[i * step:(i + 1) * step]}{p}" for i, p in enumerate(chosen)]
            sep = rng.choice(("；", "；", "，", "")) if step == 1 else rng.choice(("；", "，"))
            joint = "" if head.endswith("是") else rng.choice(("：", "", "，")) if step == 1 else "："
            text = head + joint + sep.join(numbered)
        else:  # prose
            text = head + ("，" if head and not head.endswith("是") else "") + "，".join(chosen)
        text = lead + text + rng.choice(_CLOSERS)
        return text[:250], []
